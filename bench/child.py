"""The fake Bot API in a child process, so its work and memory are not the measured bot's.

The child prints its address as one JSON line when it is listening, then answers each line it reads with one JSON
line; an empty line or the end of its input stops it.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any, Self


class ChildFake:
    """The parent's handle: `address` once started, `ask(...)` for one exchange."""

    def __init__(self, *args: str) -> None:
        self.args = args
        self.address: dict[str, str] = {}
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Self:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", *self.args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            limit=2**26,
        )  # fmt: skip
        assert self.proc.stdout is not None
        self.address = json.loads(await self.proc.stdout.readline())
        return self

    async def ask(self, line: bytes) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line)
        await self.proc.stdin.drain()
        answer: dict[str, Any] = json.loads(await self.proc.stdout.readline())
        return answer

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.returncode is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write(b"\n")
            self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
