"""The `medlegal` console script, run as a subprocess exactly as an operator would (see shared/interfaces.md).

Each run gets its own working directory and SQLite database, and an environment without any inherited
MEDLEGAL_* variable.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli_runner import Run, runner

# Numbered answers for `medlegal chat` (the option numbers printed for each question).
ORTHO = [
    "1",  # MD
    "1",  # California license: yes, active
    "11",  # other states: none
    "1",  # board certified
    "3",  # established
    "1",  # at least a third in direct treatment
    "1",  # orthopedics
    "1",  # predictable volume, fixed fees
    "3",  # 10-20 hours
    "3",  # high tolerance for paperwork
    "1",  # administrative help: yes
    "1",  # testimony: comfortable
    "1",  # in-person exams in California: yes
    "1",  # workers' compensation
]
NEPHRO = [
    "1",  # MD
    "3",  # California license: no, and not planning to
    "3",  # Texas
    "1",  # board certified
    "3",  # established
    "14",  # nephrology
    "2",  # highest per-case ceiling
    "3",  # 10-20 hours
    "1",  # low tolerance for paperwork
    "3",  # no administrative help
    "2",  # testimony: occasionally is fine
    "2,3",  # personal injury, long-term disability
]


@pytest.fixture
def medlegal(tmp_path: Path) -> Run:
    """Run `medlegal ARGS` in tmp_path against tmp_path/m.db, with the given standard input and extra env."""
    return runner(tmp_path)


def _lines(*answers: str) -> str:
    return "".join(f"{a}\n" for a in answers)


def _one_line(text: str) -> str:
    lines = text.splitlines()
    assert len(lines) == 1, text
    return lines[0]


def _recommendation(stdout: str) -> str:
    found = [line for line in stdout.splitlines() if line.startswith("Recommendation: ")]
    assert found, stdout
    return found[-1]


def _last_question(stdout: str) -> str:
    steps = [line for line in stdout.splitlines() if line.startswith("Step ")]
    assert steps, stdout
    return steps[-1]


# -- usage ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["run"],
        ["chat"],
        ["db"],
        ["db", "upgrade"],
        ["db", "downgrade"],
        ["db", "current"],
    ],
    ids=lambda a: " ".join(a) or "medlegal",
)
def test_help(medlegal: Run, args: list[str]) -> None:
    result = medlegal(*args, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: medlegal")
    assert result.stderr == ""


def test_help_lists_the_subcommands(medlegal: Run) -> None:
    out = medlegal("--help").stdout
    for name in ("run", "chat", "db"):
        assert name in out
    assert "--user" in medlegal("chat", "--help").stdout
    assert "--no-migrate" in medlegal("run", "--help").stdout


@pytest.mark.parametrize(
    "args",
    [[], ["bogus"], ["db"], ["db", "sideways"], ["chat", "--user", "x"], ["run", "--bogus"], ["--nope"]],
    ids=lambda a: " ".join(a) or "nothing",
)
def test_bad_usage_exits_2(medlegal: Run, args: list[str]) -> None:
    result = medlegal(*args)
    assert result.returncode == 2
    assert "usage: medlegal" in result.stderr
    assert "Traceback" not in result.stderr


# -- db ---------------------------------------------------------------------------------------------------


def test_db_upgrade_current_downgrade(medlegal: Run, tmp_path: Path) -> None:
    result = medlegal("db", "current")
    assert result.returncode == 0, result.stderr
    assert _one_line(result.stdout).startswith("database at base")

    result = medlegal("db", "upgrade")
    assert result.returncode == 0, result.stderr
    status = _one_line(result.stdout)
    assert status.startswith("database at ") and "up to date" in status
    assert (tmp_path / "m.db").exists()

    result = medlegal("db", "current")
    assert result.returncode == 0, result.stderr
    assert _one_line(result.stdout) == status

    result = medlegal("db", "downgrade", "base")
    assert result.returncode == 0, result.stderr
    assert _one_line(result.stdout).startswith("database at base")

    result = medlegal("db", "upgrade", "head")
    assert result.returncode == 0, result.stderr
    assert _one_line(result.stdout) == status


# -- chat -------------------------------------------------------------------------------------------------


def test_chat_california_orthopedic_surgeon_gets_qme(medlegal: Run) -> None:
    result = medlegal("chat", stdin=_lines(*ORTHO))
    assert result.returncode == 0, result.stderr
    assert _recommendation(result.stdout).startswith("Recommendation: California QME")
    assert "Please answer with one of the buttons" not in result.stdout
    assert "Traceback" not in result.stderr


def test_chat_texas_nephrologist_gets_ime(medlegal: Run) -> None:
    result = medlegal("chat", stdin=_lines(*NEPHRO))
    assert result.returncode == 0, result.stderr
    assert _recommendation(result.stdout).startswith("Recommendation: IME")
    assert "Personal injury, Long-term disability" in result.stdout
    assert "Texas" in result.stdout


def test_chat_accepts_labels_commas_and_nudges_on_free_text(medlegal: Run) -> None:
    stdin = _lines("MD", "banana", "Yes, active", "1,2", "/help", "/privacy", "board certified")
    result = medlegal("chat", stdin=stdin)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "License: MD" in out
    # the nudge, then the same question again
    nudge = out.index("Please answer with one of the buttons")
    assert out[nudge:].split("\n\n", 2)[1].startswith("Step 2 of")
    assert "California license: Yes, active" in out
    assert "Other state licenses: New York, Washington" in out  # "1,2" on a multi-choice question
    assert "/delete_me" in out and "How this works" in out  # /help
    assert "What I store and why" in out  # /privacy
    assert "Board certification: Board certified" in out  # a label typed in another case
    assert _last_question(out).startswith("Step 5 of")


def test_chat_accepts_typed_labels_for_multi_choice(medlegal: Run) -> None:
    result = medlegal("chat", stdin=_lines("DO", "Not yet, but willing to get one", "new york, Texas"))
    assert result.returncode == 0, result.stderr
    assert "Other state licenses: New York, Texas" in result.stdout


def test_chat_empty_stdin_exits_0(medlegal: Run) -> None:
    result = medlegal("chat", stdin="")
    assert result.returncode == 0, result.stderr
    assert "Step 1 of" in result.stdout
    assert result.stderr == ""


def test_chat_users_keep_separate_progress(medlegal: Run) -> None:
    first = medlegal("chat", "--user", "5", stdin=_lines("1", "1"))
    assert first.returncode == 0, first.stderr
    assert _last_question(first.stdout).startswith("Step 3 of")

    other = medlegal("chat", "--user", "6", stdin="")
    assert other.returncode == 0, other.stderr
    assert "Pick up where you left off" not in other.stdout
    assert _last_question(other.stdout).startswith("Step 1 of")

    again = medlegal("chat", "--user", "5", stdin=_lines("/start", "Resume"))
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("You were in the middle of the questions (step 3 of") == 2  # on entry and on /start
    assert "Picking up where you left off." in again.stdout
    assert _last_question(again.stdout).startswith("Step 3 of")

    # user 6 is still at the start, and the default user has nothing yet
    assert _last_question(medlegal("chat", "--user", "6").stdout).startswith("Step 1 of")
    assert "Pick up where you left off" not in medlegal("chat").stdout


def test_chat_finished_user_is_welcomed_back(medlegal: Run) -> None:
    assert medlegal("chat", "--user", "9", stdin=_lines(*ORTHO)).returncode == 0
    result = medlegal("chat", "--user", "9")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Welcome back.")
    assert _recommendation(result.stdout).startswith("Recommendation: California QME")


# -- errors -----------------------------------------------------------------------------------------------


def test_run_without_token_is_one_line_error(medlegal: Run) -> None:
    result = medlegal("run")
    assert result.returncode == 1
    line = _one_line(result.stderr)
    assert line.startswith("medlegal: ") and "MEDLEGAL_BOT_TOKEN" in line
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("args", [["run"], ["chat"], ["db", "current"]], ids=" ".join)
def test_invalid_setting_is_one_line_error(medlegal: Run, args: list[str]) -> None:
    result = medlegal(*args, env={"MEDLEGAL_TIMEZONE": "Mars/Base"})
    assert result.returncode == 1
    line = _one_line(result.stderr)
    assert line.startswith("medlegal: ") and "MEDLEGAL_TIMEZONE" in line and "Mars/Base" in line


def test_invalid_log_format_is_one_line_error(medlegal: Run) -> None:
    result = medlegal("db", "current", env={"MEDLEGAL_LOG_FORMAT": "xml"})
    assert result.returncode == 1
    assert "MEDLEGAL_LOG_FORMAT" in _one_line(result.stderr)


@pytest.mark.parametrize(
    "url",
    ["not a url", "sqlite+aiosqlite:////nonexistent-dir/sub/m.db", "mysql://x/y"],
    ids=["garbage", "nodir", "nodriver"],
)
def test_unusable_database_url_is_one_line_error(medlegal: Run, url: str) -> None:
    result = medlegal("db", "current", env={"MEDLEGAL_DATABASE_URL": url})
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    _one_line(result.stderr)
