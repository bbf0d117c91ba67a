"""The README stays true for someone who follows it on a fresh clone.

- A Python snippet that ends with ``asyncio.run(main())`` is a complete program: it is run as a
  file, and every ``# ...`` comment line right after a ``print(...)`` line is the output that
  print must give. Every other Python snippet must at least compile (top-level ``await``
  allowed: those are fragments).
- Every ``make <target>`` it names exists; it never says ``python -m`` without the
  environment's interpreter (``.venv/bin/python``), which a fresh shell does not have.
- Links and repository paths point inside the repository, at files that exist.
"""

from __future__ import annotations

import ast
import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
SNIPPET = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
COMPLETE = "asyncio.run(main())"


def python_snippets() -> list[str]:
    return SNIPPET.findall(README)


def expected_output(snippet: str) -> list[str]:
    """The ``# ...`` lines that follow each ``print(`` line."""
    lines = [line.strip() for line in snippet.splitlines()]
    return [
        following[2:]
        for line, following in itertools.pairwise(lines)
        if line.startswith("print(") and following.startswith("# ")
    ]


def test_the_complete_snippets_run_and_print_what_they_say(tmp_path: Path) -> None:
    complete = [s for s in python_snippets() if COMPLETE in s]
    assert complete, f"no README snippet ends with {COMPLETE} (the reactive tour should)"
    for number, snippet in enumerate(complete):
        expected = expected_output(snippet)
        assert expected, f"snippet {number} prints nothing it promises"
        program = tmp_path / f"snippet_{number}.py"
        program.write_text(snippet)
        done = subprocess.run(
            [sys.executable, str(program)],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == expected


@pytest.mark.parametrize("number", range(len(python_snippets())))
def test_every_snippet_compiles(number: int) -> None:
    snippet = python_snippets()[number]
    compile(snippet, f"README snippet {number}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def test_the_make_targets_it_names_exist() -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][\w-]*):", makefile, re.M))
    named = set(re.findall(r"\bmake ([a-z][\w-]*)", README))
    assert {"run", "tour", "reset", "test"} <= named
    assert named <= targets, f"README names make targets the Makefile lacks: {named - targets}"


def test_it_runs_modules_with_the_environments_interpreter() -> None:
    bare = re.findall(r"(?<![/\w])python3? -m [\w.]+", README)
    assert bare == [], f"these fail outside the venv; say make ... or .venv/bin/python: {bare}"


def test_links_and_paths_stay_inside_the_repository() -> None:
    links = re.findall(r"\]\(([^)\s]+)\)", README)
    assert links, "the README links the design document"
    code_paths = [
        token
        for token in re.findall(r"`([^`\s]+)`", README)
        if "/" in token and ":" not in token and not token.startswith("/")
    ]
    top = {entry.name for entry in ROOT.iterdir()}
    for target in links + code_paths:
        if target.startswith(("http://", "https://", "#")):
            continue
        first = target.split("/")[0]
        if target in links or first in (".", "..") or first in top:
            resolved = (ROOT / target).resolve()
            assert resolved.is_relative_to(ROOT), f"{target} points outside the repository"
            assert resolved.exists(), f"{target} does not exist in the repository"


def test_the_tour_runs_and_says_how_it_is_run(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "examples.tour", str(tmp_path / "tour.db")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "post_count dictionary: 1" in done.stdout
    doc = (ROOT / "examples" / "tour.py").read_text().split('"""')[1]
    assert "make tour" in doc and "make run" not in doc
    dry = subprocess.run(["make", "-n", "tour"], cwd=ROOT, capture_output=True, text=True)
    assert dry.returncode == 0 and ".venv/bin/python -m examples.tour" in dry.stdout
