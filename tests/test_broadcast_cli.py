"""`medlegal broadcast [FILE|-] [--audience ...] [--dry-run] [--wait]` and `medlegal broadcast status`.

Run as a subprocess like an operator would, against an SQLite file seeded in-process with the subscribers of
tests.test_audience. `--wait` is followed against a real `medlegal run` whose sender delivers to the fake Bot
API server.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from db import migrate
from db.engine import make_engine, make_session_factory
from tests.cli_runner import Run, runner
from tests.test_audience import community

MESSAGE = "<b>QME exam news</b>\nThe April window is open &amp; filling up: <i>apply early</i>.\n"
STATUS = re.compile(
    r"^(\d+)  (\d{4}-\d\d-\d\dT\d\d:\d\dZ)  (\S+)  sent (\d+)  failed (\d+)  skipped (\d+)  left (\d+)  (\w+)$"
)


async def _seed(database: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{database}")
    try:
        await migrate.upgrade(engine)
        await community(make_session_factory(engine))
    finally:
        await engine.dispose()


@pytest.fixture
async def medlegal(tmp_path: Path) -> Run:
    await _seed(tmp_path / "m.db")
    (tmp_path / "news.html").write_text(MESSAGE, encoding="utf-8")
    return runner(tmp_path, ("broadcast",))


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def _error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("medlegal: ")
    assert result.stdout == ""
    return lines[0]


def _status(medlegal: Run) -> list[tuple[str, ...]]:
    rows = []
    for line in _ok(medlegal("status")).splitlines():
        match = STATUS.match(line)
        assert match, f"not a status line: {line!r}"
        rows.append(match.groups())
    return rows


def test_help(medlegal: Run) -> None:
    result = medlegal("--help")
    assert result.returncode == 0
    for needle in ("usage: medlegal broadcast", "--audience", "--dry-run", "--wait", "status"):
        assert needle in result.stdout


def test_dry_run_prints_the_count_and_the_preview_and_queues_nothing(medlegal: Run) -> None:
    out = _ok(medlegal("news.html", "--audience", "qme", "--dry-run"))
    assert out == (
        "2 recipients, audience qme (QME track); dry run: nothing queued\n\n"
        "QME exam news\nThe April window is open & filling up: apply early.\n"
    )
    out = _ok(medlegal("-", "--audience", "specialty:pmr", "--dry-run", stdin=MESSAGE))
    assert out.startswith("1 recipient, audience specialty:pmr (Specialty: PM&R); dry run")
    result = medlegal("status")
    assert result.stdout == "" and result.stderr.strip() == "no broadcasts yet"


def test_queue_then_status(medlegal: Run) -> None:
    out = _ok(medlegal("news.html"))
    assert out == "queued broadcast #1 to 5 recipients, audience all (All subscribers)\n"
    out = _ok(medlegal(stdin=MESSAGE, env={}))  # no FILE: standard input
    assert out == "queued broadcast #2 to 5 recipients, audience all (All subscribers)\n"
    out = _ok(medlegal("-", "--audience", "CA", stdin=MESSAGE))
    assert out == "queued broadcast #3 to 2 recipients, audience ca (California-licensed)\n"
    rows = _status(medlegal)
    assert [(r[0], r[2], r[3:]) for r in rows] == [  # the newest first
        ("3", "ca", ("0", "0", "0", "2", "queued")),
        ("2", "all", ("0", "0", "0", "5", "queued")),
        ("1", "all", ("0", "0", "0", "5", "queued")),
    ]


@pytest.mark.parametrize(
    ("args", "stdin", "says"),
    [
        (["-"], "<b>QME exam news", "medlegal: the message is not valid Telegram HTML: unclosed <b> tag"),
        (["-"], "<div>x</div>", "<div> is not a tag Telegram allows"),
        (["-"], "a\n<b>b\n", "unclosed <b> tag (line 2)"),
        (["-"], "   \n", "the message is empty"),
        (["missing.html"], "", "medlegal: cannot read the message from missing.html: No such file or directory"),
        (["news.html", "--audience", "everyone"], "", "'everyone' is not an audience; use all, qme, hybrid, ca"),
        (["news.html", "--audience", "specialty:cardio"], "", "unknown specialty 'cardio'; use one of ortho, pmr"),
        (["news.html", "--audience", "source:club"], "", "audience source:club is not available yet"),
        (["news.html", "--audience", "specialty:derm"], "", "no active subscriber is in audience specialty:derm"),
    ],
    ids=["unclosed", "div", "line", "empty", "no-file", "audience", "specialty", "source", "nobody"],
)
def test_errors_are_one_line_exit_1_and_queue_nothing(medlegal: Run, args: list[str], stdin: str, says: str) -> None:
    assert says in _error(medlegal(*args, stdin=stdin))
    assert _status(medlegal) == []


def test_status_takes_no_options(medlegal: Run) -> None:
    result = medlegal("status", "--dry-run")
    assert result.returncode == 2 and "usage: medlegal" in result.stderr
