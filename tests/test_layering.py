"""The design card's arrows: bot -> flows, bot -> db; flows imports neither, nor telegram or sqlalchemy."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _imports(package: str) -> set[str]:
    found: set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found


def test_flows_imports_no_transport_and_no_database() -> None:
    assert not _imports("flows") & {"telegram", "sqlalchemy", "db", "bot", "alembic"}


def test_db_does_not_depend_on_the_bot_or_telegram() -> None:
    assert not _imports("db") & {"telegram", "bot", "flows"}


def test_importing_flows_loads_neither_telegram_nor_sqlalchemy() -> None:
    code = (
        "import sys, flows.engine, flows.recommend; flows.engine.FlowEngine();"
        "bad = [m for m in sys.modules if m.split('.')[0] in {'telegram', 'sqlalchemy', 'db', 'bot'}];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
