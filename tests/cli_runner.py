"""Run the installed `medlegal` command in a subprocess, isolated from the caller's MEDLEGAL_* settings."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

SCRIPT = Path(sys.executable).parent / "medlegal"
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "bot"]

Run = Callable[..., subprocess.CompletedProcess[str]]


def clean_env(database: Path, **settings: str) -> dict[str, str]:
    """The process environment without MEDLEGAL_* variables, pointed at an SQLite file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDLEGAL_")}
    env["MEDLEGAL_DATABASE_URL"] = f"sqlite+aiosqlite:///{database}"
    env.update(settings)
    return env


def runner(cwd: Path, prefix: tuple[str, ...] = (), **settings: str) -> Run:
    """`run(*args, stdin="", env=None)` runs `medlegal [prefix] args` in `cwd` against `cwd`/m.db."""
    base = clean_env(cwd / "m.db", **settings)

    def run(*args: str, stdin: str = "", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        command = list(args) if args[:1] == ("chat",) else [*prefix, *args]
        return subprocess.run(
            [*COMMAND, *command],
            cwd=cwd,
            env={**base, **(env or {})},
            input=stdin,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=60,
            check=False,
        )

    return run


def ok(result: subprocess.CompletedProcess[str]) -> str:
    """Standard output of a successful run (exit 0, no traceback)."""
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def user_error(result: subprocess.CompletedProcess[str]) -> str:
    """The one line a user error prints on stderr (exit 1, nothing on stdout)."""
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("medlegal: ")
    assert result.stdout == ""
    return lines[0]
