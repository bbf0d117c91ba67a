"""The public surface of ``reactive``: what users need, every contract name, nothing internal;
and the integrations package uses nothing else of it (imports point one way, through public
names only)."""

from __future__ import annotations

import ast
from pathlib import Path

import reactive
import reactive.server
import reactive.wire

ROOT = Path(__file__).resolve().parents[2]
PUBLIC_SUBMODULES = {
    "reactive",
    "reactive.server",
    "reactive.wire",
    "reactive.testing",
    "reactive.testing.strategies",
}

# DESIGN.md sections 4, 5 and 7 name these as r.<name> (contract).
CONTRACT = {
    "API",
    "Any",
    "Average",
    "Condition",
    "Controller",
    "Count",
    "Custom",
    "Dictionary",
    "DispatchResult",
    "Entity",
    "Every",
    "INTERACTION_EVENT",
    "Interaction",
    "MigrationError",
    "MutationEvent",
    "Payload",
    "PayloadItem",
    "Property",
    "RecordMutationSideEffect",
    "Relation",
    "SetupError",
    "StateMachine",
    "StateNode",
    "StateTransfer",
    "Summation",
    "Transform",
    "Trigger",
    "UniqueConstraint",
    "NonNullConstraint",
    "WeightedSummation",
    "create_app",
}
INTERNAL = {
    "ControllerStorage",
    "DICTIONARY_RECORD",
    "Engine",
    "EngineStorage",
    "LookupWarnings",
    "SideEffectQueue",
}


def test_every_contract_name_is_public_and_no_internal_one_is() -> None:
    public = set(reactive.__all__)
    assert public >= CONTRACT, CONTRACT - public
    assert not INTERNAL & public, INTERNAL & public
    assert len(public) == len(reactive.__all__)  # no name twice
    for name in reactive.__all__:
        assert hasattr(reactive, name), name
        assert getattr(reactive, name).__doc__ or name.isupper(), f"{name} has no docstring"
    # Names the integrations share with the engine are public where they belong.
    assert reactive.record_name("Post") == "Post"
    # A Custom's data dependencies (issue 14 item 5) are declared with these.
    assert {"RecordsDep", "DictionaryDep", "OwnFieldsDep"} <= public
    assert {"parse_json", "DEFAULT_MAX_JSON_DEPTH"} <= set(reactive.wire.__all__)
    assert "CONTROLLER_KEY" in reactive.server.__all__


def _reactive_uses(path: Path) -> list[str]:
    """What one module of integrations takes from reactive: 'module:name' per import and
    'r.name' per attribute of the package alias."""
    tree = ast.parse(path.read_text(), str(path))
    aliases = set()
    uses = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "reactive":
                    uses.append(f"{alias.name}:*")
                    if alias.name == "reactive":
                        aliases.add(alias.asname or "reactive")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "reactive":
            uses.extend(f"{node.module}:{alias.name}" for alias in node.names)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
        ):
            uses.append(f"r.{node.attr}")
    return uses


def test_integrations_use_only_public_names_of_reactive() -> None:
    wrong = []
    files = sorted((ROOT / "integrations").rglob("*.py"))
    assert len(files) > 10
    for path in files:
        for use in _reactive_uses(path):
            if use.startswith("r."):
                ok = use[2:] in reactive.__all__
            else:
                module, name = use.split(":")
                if module not in PUBLIC_SUBMODULES:
                    ok = False
                elif name == "*":
                    ok = True
                else:
                    ok = name in getattr(__import__(module, fromlist=["_"]), "__all__", ())
            if not ok or use.split(":")[-1].startswith("_"):
                wrong.append(f"{path.relative_to(ROOT)}: {use}")
    assert not wrong, "\n".join(wrong)
