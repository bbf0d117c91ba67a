"""Another process holding a database's lock, for the tests of waiting for it.

Run as ``python -m tests.storage.lock_holder PATH``: it takes the write lock (``BEGIN
IMMEDIATE``), prints ``locked``, holds it until a line (or end of input) arrives on stdin,
commits and prints ``released``. In WAL mode writers wait for it; readers do not.

:class:`LockHolder` drives it from async tests. If the test process dies, stdin closes and the
holder lets go by itself.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_WAIT = 60.0  # seconds any single step of the holder may take before the test fails


class LockHolder:
    """``async with LockHolder(path) as holder:`` the lock is held; ``await holder.release()``
    (or leaving the block) lets it go."""

    def __init__(self, path: str):
        self.path = path
        self._process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> LockHolder:
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.storage.lock_holder",
            self.path,
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert self._process.stdout is not None
        line = await asyncio.wait_for(self._process.stdout.readline(), _WAIT)
        if line != b"locked\n":
            self._process.kill()
            await self._process.wait()
            raise AssertionError(f"the lock holder did not take the lock: {line!r}")
        return self

    async def release(self) -> None:
        """Let the lock go and wait until the holder process has ended."""
        process = self._process
        if process is None or process.returncode is not None:
            return
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(b"release\n")
        await process.stdin.drain()
        line = await asyncio.wait_for(process.stdout.readline(), _WAIT)
        assert line == b"released\n", line
        assert await asyncio.wait_for(process.wait(), _WAIT) == 0

    async def __aexit__(self, *exc_info: object) -> None:
        if exc_info[1] is None:
            await self.release()
        elif self._process is not None and self._process.returncode is None:
            self._process.kill()
            await self._process.wait()


def main(path: str) -> None:
    conn = sqlite3.connect(path, isolation_level=None, timeout=_WAIT)
    conn.execute("BEGIN IMMEDIATE")
    print("locked", flush=True)
    sys.stdin.readline()
    if conn.in_transaction:
        conn.execute("COMMIT")
    conn.close()
    print("released", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
