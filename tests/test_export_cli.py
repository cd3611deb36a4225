"""`medlegal export` against a database seeded through the real dialogue and repository, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from matplotlib import image
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.cli import main
from bot.export_files import COLUMNS
from bot.settings import Settings
from bot.wiring import build_dialogue
from db import polls as poll_store
from db import progress as progress_store
from db import repository as repo
from db import sources as source_store
from db.models import FlowSession
from flows.definition import load_definition
from tests.cli_runner import Run, clean_env, ok, runner
from tests.harness import answer_all

Answers = Sequence[str | tuple[str, ...]]
# California orthopedic surgeon (QME), Texas nephrologist (IME), New York and California PM&R physician (hybrid)
ORTHO: Answers = [
    "md", "active", ("none",), "certified", "established", "third_plus", "ortho", "predictable", "10to20", "high",
    "yes", "comfortable", "yes", ("wc",),
]  # fmt: skip
NEPHRO: Answers = [
    "md", "no", ("TX",), "certified", "established", "nephro", "mix", "5to10", "medium", "could", "occasionally",
    ("pi", "ltd"),
]  # fmt: skip
PMR: Answers = [
    "do", "active", ("NY",), "certified", "early", "third_plus", "pmr", "mix", "5to10", "medium", "could",
    "occasionally", "yes", ("wc", "pi"),
]  # fmt: skip
SEPTEMBER = datetime(2026, 9, 15, 18, tzinfo=UTC)
OCTOBER = datetime(2026, 10, 14, 18, tzinfo=UTC)
FIRST_ID = 7_000_000_001  # large Telegram-like ids, so that a leak would be visible in the output
PLAN = [(ORTHO, SEPTEMBER)] * 4 + [(NEPHRO, SEPTEMBER)] * 3 + [(ORTHO, OCTOBER)] * 5 + [(PMR, OCTOBER)] * 3
USER_IDS = [FIRST_ID + i for i in range(len(PLAN) + 1)]


async def seed(sessions: async_sessionmaker[AsyncSession], plan: Sequence[tuple[Answers, datetime]]) -> list[int]:
    """The first physician of each profile goes through the flow in the real dialogue; the others store the same
    answers and recommendation through the repository (much faster); each completion is dated to the plan's month.

    One more physician stops after two answers: an unfinished flow does not count.
    """
    dialogue = build_dialogue(Settings(_env_file=None), sessions)
    played: dict[int, tuple[dict[str, repo.AnswerValue], str]] = {}
    users = []
    for number, (answers, when) in enumerate(plan):
        user = FIRST_ID + number
        if id(answers) not in played:
            await answer_all(dialogue, user, answers)
            async with sessions() as session:
                flow = await repo.latest_flow(session, user)
                recommendation = await repo.latest_recommendation(session, user)
            assert flow is not None and flow.status == "completed" and recommendation is not None
            played[id(answers)] = (flow.answers, recommendation.path)
        else:
            stored, path = played[id(answers)]
            async with sessions() as session, session.begin():
                await repo.lock_user(session, user)
                flow = await repo.start_flow(session, user, None)
                flow = await repo.save_flow(
                    session, flow.id, current_key=None, editing=False, draft=(), answers=stored, status="completed"
                )
                await repo.add_recommendation(session, flow.id, path, 0, 0, {})
        async with sessions() as session, session.begin():
            await session.execute(update(FlowSession).where(FlowSession.user_id == user).values(completed_at=when))
        users.append(user)
    await answer_all(dialogue, FIRST_ID + len(plan), ["md", "active"])
    return users


QME = "California QME (Qualified Medical Evaluator)"
FEES = (("lt1k", "Under $1,000"), ("1to2k", "$1,000-2,000"), ("2to3k", "$2,001-3,500"), ("gt3k", "Over $3,500"))


async def seed_extras(sessions: async_sessionmaker[AsyncSession], users: Sequence[int]) -> list[int]:
    """On top of `seed(PLAN)`: a start link "club" (the five October orthopedic surgeons, and three physicians who
    arrived through it in October without finishing), ticked steps (the September surgeons confirmed their
    eligibility), and the community poll "fees" (September: 4 surgeons, 3 nephrologists; October: one physician
    without a flow, a month-cell below k). Returns every user id involved."""
    drifters = [FIRST_ID + 900, FIRST_ID + 901, FIRST_ID + 902]
    lone = FIRST_ID + len(PLAN)  # stopped after two answers in seed()
    async with sessions() as session, session.begin():
        await source_store.add_source(session, "club", "Ortho Club", date(2026, 9, 1))
        for user in [*users[7:12], *drifters]:
            await repo.lock_user(session, user)
            assert await source_store.attribute(session, user, "club", date(2026, 10, 3))
        for user in users[:4]:
            assert await progress_store.set_step(session, user, "eligible", True, date(2026, 10, 1))
        poll = await poll_store.add_poll(
            session, key="fees", question="What do you charge for a standard IME?", options=FEES
        )
        assert poll is not None
        for user in users[:4]:
            await poll_store.set_answer(session, poll.id, user, ["1to2k"], date(2026, 9, 20))
        for user in users[4:7]:
            await poll_store.set_answer(session, poll.id, user, ["2to3k"], date(2026, 9, 30))
        await poll_store.set_answer(session, poll.id, lone, ["gt3k"], date(2026, 10, 2))
    return [*users, *drifters, lone]


def medlegal(tmp_path: Path, db_url: str) -> Run:
    return runner(tmp_path, ("export",), MEDLEGAL_DATABASE_URL=db_url, MEDLEGAL_TODAY="2026-11-29", MEDLEGAL_K_MIN="3")


def parse_csv(text: str) -> list[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(text))
    assert tuple(reader.fieldnames or ()) == COLUMNS
    return list(reader)


def figure(rows: list[dict[str, str]], poll: str, option: str, breakdown: str = "all") -> tuple[str, str, str]:
    row = next(r for r in rows if (r["poll"], r["option"], r["breakdown"]) == (poll, option, breakdown))
    return row["count"], row["share"], row["respondents"]


def assert_anonymous(text: str, users: Sequence[int]) -> None:
    """No Telegram id, no name, nothing finer than a month, nothing but the flow's own words."""
    for user in users:
        assert str(user) not in text
    assert "Dana" not in text  # the fake Bot API's default first name


def vocabulary() -> set[str]:
    defn = load_definition()
    words = {"Recommended path", *(p.title for p in defn.rules.paths.values())}
    for question in defn.questions:
        words |= {question.title, *(o.label for o in question.options)}
    return words


async def test_export_csv_json_png_on_each_backend(
    tmp_path: Path, db_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    users = await seed(sessions, PLAN)
    run = medlegal(tmp_path, db_url)

    rows = parse_csv(ok(run("--format", "csv", "--out", "-")))
    assert figure(rows, "flow.specialty", "Orthopedics") == ("9", "0.6", "15")
    assert figure(rows, "flow.specialty", "Nephrology") == ("3", "0.2", "15")
    assert figure(rows, "flow.specialty", "PM&R") == ("3", "0.2", "15")
    assert figure(rows, "flow.specialty", "Psychiatry") == ("<3", "", "15")
    assert figure(rows, "flow.path", "California QME (Qualified Medical Evaluator)")[0] == "9"
    assert figure(rows, "flow.case_types", "Workers' compensation") == ("12", "0.8", "15")
    assert {(r["period_start"], r["period_end"]) for r in rows} == {("2026-09-01", "2026-10-31")}
    assert {r["breakdown"] for r in rows} == {"all"}
    for row in rows:
        assert row["count"] == "<3" or int(row["count"]) >= 3
        assert (row["share"] == "") == (row["count"] == "<3")
        if row["poll"].startswith("flow."):
            assert row["question"] in vocabulary() and row["option"] in vocabulary()

    out = tmp_path / "export.json"
    assert ok(run("--format", "json", "--out", str(out), "--poll", "flow.path", "--by", "specialty")) == ""
    records = json.loads(out.read_text())
    assert all(set(r) == set(COLUMNS) for r in records)
    cells = {(r["breakdown"], r["option"]): (r["count"], r["share"], r["respondents"]) for r in records}
    assert cells[("specialty:ortho", "California QME (Qualified Medical Evaluator)")] == (9, 1.0, 9)
    assert cells[("specialty:nephro", "IME (Independent Medical Examinations)")] == (3, 1.0, 3)
    assert cells[("specialty:nephro", "Hybrid: QME and IME")] == ("<3", None, 3)
    assert {r["poll"] for r in records} == {"flow.path"}

    everything = out.read_text() + "\n".join(",".join(r.values()) for r in rows)
    assert_anonymous(everything, users)
    if not db_url.startswith("sqlite"):
        return  # the rest does not depend on the database

    charts = tmp_path / "charts"
    printed = ok(run("--format", "png", "--out", str(charts), "--since", "2026-10", "--until", "2026-10")).split()
    names = sorted(p.name for p in charts.iterdir())
    assert sorted(Path(p).name for p in printed) == names
    assert "flow.path.png" in names and "flow.specialty.png" in names
    assert len([n for n in names if n.startswith("flow.")]) == 15
    pixels = image.imread(charts / "flow.path.png")
    assert pixels.shape[0] > 200 and pixels.shape[1] > 400

    # the console writes /export's documents to the working directory and prints where
    console = ok(run("chat", "--admin", stdin="/export\n"))
    saved = tmp_path / "medlegal-export-2026-09-2026-10.csv"
    assert f"Saved to {saved}" in console and f"Saved to {tmp_path / 'flow.path.png'}" in console
    assert parse_csv(saved.read_text()) == rows


def test_export_errors_are_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """In process (the checks are the same as in a subprocess, without its start-up time)."""
    monkeypatch.chdir(tmp_path)
    for key, value in clean_env(tmp_path / "m.db", MEDLEGAL_TODAY="2026-11-29").items():
        monkeypatch.setenv(key, value)

    def error(*args: str) -> str:
        assert main(["export", *args]) == 1
        captured = capsys.readouterr()
        assert captured.out == "" and len(captured.err.splitlines()) == 1, captured
        return captured.err

    csv_args = ("--format", "csv", "--out", "-")
    assert "is not a month" in error(*csv_args, "--since", "2026-13")
    assert "is not a month" in error(*csv_args, "--until", "Oct")
    assert "starts (2026-10) after it ends (2026-09)" in error(*csv_args, "--since", "2026-10", "--until", "2026-09")
    assert "2026-11 has not ended yet" in error(*csv_args, "--until", "2026-11")
    assert "unknown poll 'nope'; polls with answers: none yet" in error(*csv_args, "--poll", "nope")
    assert "cannot write" in error("--format", "csv", "--out", str(tmp_path / "missing" / "x.csv"))
    assert "is a directory" in error("--format", "json", "--out", str(tmp_path))
    (tmp_path / "file").write_text("")
    assert "needs a directory" in error("--format", "png", "--out", str(tmp_path / "file"))
    assert "give a directory" in error("--format", "png", "--out", "-")
    # nobody has answered yet: the header alone, and a word on stderr
    assert main(["export", *csv_args]) == 0
    captured = capsys.readouterr()
    assert parse_csv(captured.out) == []
    assert "no poll reached 5 respondents" in captured.err
    for usage in (["--format", "pdf", "--out", "-"], ["--out", "-"]):
        with pytest.raises(SystemExit) as exited:
            main(["export", *usage])
        assert exited.value.code == 2


async def test_community_polls_sources_and_the_funnel_in_the_export_and_in_chat(
    tmp_path: Path, db_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    everyone = await seed_extras(sessions, await seed(sessions, PLAN))
    run = medlegal(tmp_path, db_url)
    rows = parse_csv(ok(run("--format", "csv", "--out", "-")))

    # the community poll: September's 7 answers; October's single answer is a month-cell below k, left out
    assert figure(rows, "fees", "$1,000-2,000") == ("4", "0.5714", "7")
    assert figure(rows, "fees", "$2,001-3,500") == ("3", "0.4286", "7")
    assert figure(rows, "fees", "Over $3,500") == ("<3", "", "7")
    # start links: October has 5 finished and 3 not finished through "club", and 3 finished without a link
    assert figure(rows, "source.link", "Ortho Club: finished") == ("5", "0.2778", "18")
    assert figure(rows, "source.link", "Ortho Club: not finished yet") == ("3", "0.1667", "18")
    assert figure(rows, "source.link", "No start link: finished") == ("10", "0.5556", "18")
    # the funnel: every flow respondent; the QME track's first open step
    assert figure(rows, "progress.qme", "Report-writing course done") == ("4", "0.2667", "15")
    assert figure(rows, "progress.qme", "Eligibility confirmed") == ("8", "0.5333", "15")
    # September's 3 nephrologists are withheld: 7 - 3 leaves 4 for two withheld options, which pins both at 2
    assert figure(rows, "progress.ime", "First IME company or referral source") == ("3", "0.2", "15")
    for row in rows:
        assert row["count"] == "<3" or int(row["count"]) >= 3

    # --by source is populated, cell by cell as source.link allows; --poll works for a community poll
    by_source = parse_csv(ok(run("--format", "csv", "--out", "-", "--by", "source")))
    assert figure(by_source, "flow.path", QME, "source:club") == ("5", "1", "5")
    assert figure(by_source, "flow.path", QME, "source:none") == ("4", "0.4", "10")
    assert {r["breakdown"] for r in by_source if r["poll"] == "flow.path"} == {"source:club", "source:none"}
    fees = parse_csv(ok(run("--format", "csv", "--out", "-", "--poll", "fees", "--by", "specialty")))
    assert {r["poll"] for r in fees} == {"fees"}
    assert figure(fees, "fees", "$1,000-2,000", "specialty:ortho") == ("4", "1", "4")
    assert figure(fees, "fees", "$2,001-3,500", "specialty:nephro") == ("3", "1", "3")
    out = tmp_path / "fees.json"
    ok(run("--format", "json", "--out", str(out), "--poll", "fees", "--by", "license"))
    licenses = {(r["breakdown"], r["option"]): r["count"] for r in json.loads(out.read_text())}
    assert licenses[("license:CA", "$1,000-2,000")] == 4 and licenses[("license:TX", "$2,001-3,500")] == 3

    # /sources and /funnel in chat show the export's own figures
    chat = ok(run("chat", "--admin", stdin="/sources\n/funnel\n"))
    assert "Ortho Club" in chat and "started 8 · finished 5 · not finished yet 3" in chat
    assert "No start link, finished: 10" in chat
    assert "Report-writing course done: 4" in chat and "Eligibility confirmed: 8" in chat
    assert "First IME company or referral source: 3" in chat and "Sep 2026 - Oct 2026" in chat

    charts = tmp_path / "charts"
    ok(run("--format", "png", "--out", str(charts), "--poll", "fees"))
    assert sorted(p.name for p in charts.iterdir()) == ["fees.png"]
    assert image.imread(charts / "fees.png").shape[0] > 200
    assert_anonymous(
        "\n".join(",".join(r.values()) for r in [*rows, *by_source, *fees]) + out.read_text() + chat, everyone
    )
