"""`medlegal broadcast [FILE|-] [--audience ...] [--dry-run] [--wait]` and `medlegal broadcast status`.

Run as a subprocess like an operator would, against an SQLite file seeded in-process with the subscribers of
tests.test_audience. `--wait` is followed against a real `medlegal run` whose sender delivers to the fake Bot
API server.
"""

from __future__ import annotations

import asyncio
import io
import re
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot import cli
from db import migrate, outbox
from db.engine import make_engine, make_session_factory
from tests.cli_runner import COMMAND, Run, clean_env, ok, runner, user_error
from tests.fake_bot_api import FakeBotApi
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


def _status(medlegal: Run) -> list[tuple[str, ...]]:
    rows = []
    for line in ok(medlegal("status")).splitlines():
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
    out = ok(medlegal("news.html", "--audience", "qme", "--dry-run"))
    assert out == (
        "2 recipients, audience qme (QME track); dry run: nothing queued\n\n"
        "QME exam news\nThe April window is open & filling up: apply early.\n"
    )
    out = ok(medlegal("-", "--audience", "specialty:pmr", "--dry-run", stdin=MESSAGE))
    assert out.startswith("1 recipient, audience specialty:pmr (Specialty: PM&R); dry run")
    result = medlegal("status")
    assert result.stdout == "" and result.stderr.strip() == "no broadcasts yet"


def test_queue_then_status(medlegal: Run) -> None:
    out = ok(medlegal("news.html"))
    assert out == "queued broadcast #1 to 5 recipients, audience all (All subscribers)\n"
    out = ok(medlegal(stdin=MESSAGE, env={}))  # no FILE: standard input
    assert out == "queued broadcast #2 to 5 recipients, audience all (All subscribers)\n"
    out = ok(medlegal("-", "--audience", "CA", stdin=MESSAGE))
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
        (["news.html", "--audience", "source:club"], "", "no active subscriber is in audience source:club"),
        (["news.html", "--audience", "specialty:derm"], "", "no active subscriber is in audience specialty:derm"),
    ],
    ids=["unclosed", "div", "line", "empty", "no-file", "audience", "specialty", "source", "nobody"],
)
def test_errors_are_one_line_exit_1_and_queue_nothing(medlegal: Run, args: list[str], stdin: str, says: str) -> None:
    assert says in user_error(medlegal(*args, stdin=stdin))
    assert _status(medlegal) == []


def test_status_takes_no_options(medlegal: Run) -> None:
    result = medlegal("status", "--dry-run")
    assert result.returncode == 2 and "usage: medlegal" in result.stderr


# -- --wait, with the sender of a running bot --------------------------------------------------------------


async def test_wait_follows_the_sender_to_the_final_report(fake: FakeBotApi, tmp_path: Path) -> None:
    await _seed(tmp_path / "m.db")
    (tmp_path / "news.html").write_text(MESSAGE, encoding="utf-8")
    fake.fail("403", chat_id=2)  # physician 2 blocked the bot
    env = clean_env(tmp_path / "m.db", MEDLEGAL_BOT_TOKEN=fake.token, MEDLEGAL_TELEGRAM_BASE_URL=fake.base_url)
    bot = await asyncio.create_subprocess_exec(
        *COMMAND, "run", cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        await fake.wait_for_call("setMyCommands", timeout=20)
        wait = await asyncio.create_subprocess_exec(
            *COMMAND,
            "broadcast",
            "news.html",
            "--wait",
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out_bytes, err_bytes = await asyncio.wait_for(wait.communicate(), 30)
    finally:
        bot.send_signal(signal.SIGINT)
        _, bot_err = await asyncio.wait_for(bot.communicate(), 20)
    out, err = out_bytes.decode(), err_bytes.decode()
    assert wait.returncode == 0, err
    assert out.splitlines() == [
        "queued broadcast #1 to 5 recipients, audience all (All subscribers)",
        "broadcast #1 done: sent 4, failed 1, skipped 0",
    ]
    bars = err.splitlines()
    assert bars and all(re.match(r"^\[[#.]{30}\] +\d+%  sent \d+  failed \d+  skipped \d+  left \d+$", b) for b in bars)
    assert bars[-1] == f"[{'#' * 30}] 100%  sent 4  failed 1  skipped 0  left 0"
    for user_id in (1, 3, 4, 6):
        [received] = fake.messages(user_id)
        assert received.text == MESSAGE.strip()
    assert not fake.messages(2) and not fake.messages(7)
    assert bot.returncode == 0, bot_err.decode()


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


async def test_wait_redraws_one_line_on_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """In-process: the bar is redrawn with a carriage return on a TTY while rows resolve one by one."""
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")
    await migrate.upgrade(engine)
    sessions = make_session_factory(engine)
    await community(sessions)
    async with sessions() as s, s.begin():
        broadcast = await outbox.queue_broadcast(s, text="hi", audience="all", created_by=None, recipients=[1, 2, 3])
        broadcast_id = broadcast.id

    async def deliver() -> None:
        for _ in range(3):
            await asyncio.sleep(0.05)
            async with sessions() as s, s.begin():
                [row] = await outbox.claim_due(s, datetime.now(UTC), 1, 60)
                await outbox.mark_sent(s, row, 7)

    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    try:
        _, code = await asyncio.gather(deliver(), cli._follow(sessions, broadcast_id, 3, interval=0.01))
    finally:
        await engine.dispose()
    assert code == 0
    drawn = terminal.getvalue()
    assert drawn.startswith("\r[") and drawn.endswith(f"\r[{'#' * 30}] 100%  sent 3  failed 0  skipped 0  left 0\n")
    assert drawn.count("\n") == 1 and 2 <= drawn.count("\r") <= 4  # each state drawn at most once, in place
    assert capsys.readouterr().out == f"broadcast #{broadcast_id} done: sent 3, failed 0, skipped 0\n"
