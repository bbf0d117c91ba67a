"""The ModelMachine on the donations application: the example holds, and three bugs planted
in copies of its model (tests/examples/planted.py) are found within the default number of
examples, shrunk to a handful of steps, and printed as a test that reproduces them.

The runs are derandomized (a fixed seed, the same on every machine) so that CI sees the same
examples every time; INTERAQT_MAX_EXAMPLES raises the number of examples for a longer hunt.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test

import integrations.testing.machine  # noqa: F401  (registers the APICall event steps)
from reactive.testing import ModelMachine, ModelMachineFailure
from tests.examples import machine_app, planted

HANDFUL = 6  # a user, a donation, a delivery or two, a check


def run(build: Callable[..., Any], invariants: list[Any], **options: Any) -> None:
    machine = ModelMachine.for_app(build, users="User", invariants=invariants, **options)
    chosen = settings(machine.TestCase.settings, database=None, derandomize=True)
    run_state_machine_as_test(machine, settings=chosen)


def test_the_donations_app_holds() -> None:
    """The example's model as it ships: every interaction, plain write, provider event and
    restart keeps verify() clean and the total right."""
    run(machine_app.build, [planted.total_is_the_sum_of_the_amounts])


def test_the_correct_copy_holds() -> None:
    run(planted.build, planted.INVARIANTS, writable=["User"])


@pytest.mark.parametrize(
    ("build", "broken"),
    [
        (planted.build_wrong_callback, "total_is_the_sum_of_the_amounts"),
        (planted.build_missing_transfer, "payment_state_follows_the_payment"),
        (planted.build_non_idempotent, "one_receipt_per_donation"),
    ],
    ids=["wrong callback", "missing transfer", "non-idempotent side effect"],
)
def test_a_planted_bug_is_found_shrunk_and_printed(
    build: Callable[..., Any], broken: str, tmp_path: Path
) -> None:
    with pytest.raises(ModelMachineFailure) as found:
        run(build, planted.INVARIANTS, writable=["User"])
    failure = found.value
    assert broken in failure.report
    assert 2 <= len(failure.steps) <= HANDFUL, failure.code
    assert len(failure.code.splitlines()) <= 25

    # The printed test runs and fails the same way; on the correct copy it passes.
    for name, folder, fails in ((build.__name__, "bug", True), ("build", "fixed", False)):
        code = failure.code.replace(f"import {build.__name__}\n", f"import {name}\n").replace(
            f"Replay.open({build.__name__},", f"Replay.open({name},"
        )
        namespace: dict[str, Any] = {}
        exec(compile(code, f"<printed test for {name}>", "exec"), namespace)
        test = namespace["test_found_by_model_machine"]
        (tmp_path / folder).mkdir()
        if fails:
            with pytest.raises(AssertionError, match=broken):
                asyncio.run(test(tmp_path / folder))
        else:
            asyncio.run(test(tmp_path / folder))
