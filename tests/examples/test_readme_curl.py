"""The README's curl tour, run as written (bash and curl, against the example app on loopback):
every command must keep working as the server tightens what it accepts (JSON bodies need
``Content-Type: application/json``), and so must the commands ``make run`` prints."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from examples.donations.__main__ import serve_locally

from .test_donations import free_port

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="needs the curl command")


def _readme_tour() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks: list[str] = re.findall(r"```sh\n(.*?)```", readme, re.DOTALL)
    tour = [block for block in blocks if block.startswith("BASE=")]
    assert len(tour) == 1, "the README has one curl tour starting with BASE="
    return tour[0]


def _curl_commands(script: str) -> list[str]:
    """Each curl command of a shell script (continuation lines joined), also inside ``$(...)``,
    up to the end of its line or of the substitution."""
    return re.findall(r"curl\s[^\n)]*", script.replace("\\\n", " "))


def test_every_curl_that_sends_a_body_says_it_is_json() -> None:
    banner = (ROOT / "examples" / "donations" / "__main__.py").read_text(encoding="utf-8")
    for script in (_readme_tour(), banner):
        commands = [c for c in _curl_commands(script) if " -d " in c]
        assert len(commands) == 4, commands
        for command in commands:
            assert "Content-Type: application/json" in command, command


def _json_values(text: str) -> list[object]:
    """The JSON documents curl printed one after the other (no newline between them)."""
    decoder, values, at = json.JSONDecoder(), [], 0
    while at < len(text.rstrip()):
        value, at = decoder.raw_decode(text, at)
        values.append(value)
        while at < len(text) and text[at].isspace():
            at += 1
    return values


async def test_the_readme_tour_runs_as_written(tmp_path: Path) -> None:
    port = free_port()
    script = _readme_tour().replace("BASE=http://127.0.0.1:8080", f"BASE=http://127.0.0.1:{port}")
    async with serve_locally(port, str(tmp_path / "tour.db")) as app:
        process = await asyncio.create_subprocess_exec(
            "bash",
            "-euo",
            "pipefail",
            "-c",
            script,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), timeout=120)
        assert process.returncode == 0, err.decode()
        answers: list[Any] = _json_values(out.decode())
        # register, donate, donations.mine (the login's answer is consumed by python3)
        assert len(answers) == 3, answers
        assert all("error" not in answer for answer in answers), answers
        assert answers[0]["username"] == "ada"
        assert answers[1]["data"]["amount"] == 2500
        assert answers[2]["donations"][0]["amount"] == 2500
        assert await app.controller.storage.count("Donation") == 1
