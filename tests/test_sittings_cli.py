"""`medlegal sittings list|add|edit|remove` (shared/interfaces.md).

The contract (exit codes, one line on stderr, the list format, MEDLEGAL_TODAY, the 90-day hint) is checked by
running the command as a subprocess like an operator would; the matrix of bad input goes through the same
`bot.cli.main` in-process, since each subprocess costs about a second. Each test gets its own working directory
and SQLite database, "today" frozen with MEDLEGAL_TODAY, and no inherited MEDLEGAL_* variable.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.cli import main
from tests.cli_runner import Run, ok, runner, user_error

TODAY = "2026-12-01"
LINE = re.compile(r"^(\d+)  (\d{4}-\d\d-\d\d)\.\.(\d{4}-\d\d-\d\d)  deadline (\d{4}-\d\d-\d\d|-)(?:  (.+))?$")
HINT = "no sitting is known more than 90 days ahead: add the next one"
SEEDED = 3  # rows in flows/data/sittings.toml, all in the past

InProcess = Callable[..., tuple[int, str, str]]


@pytest.fixture
def medlegal(tmp_path: Path) -> Run:
    return runner(tmp_path, ("sittings",), MEDLEGAL_TODAY=TODAY)


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> InProcess:
    """`medlegal sittings ARGS` through `bot.cli.main`: (exit code, stdout, stderr)."""
    for name in [k for k in os.environ if k.startswith("MEDLEGAL_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("MEDLEGAL_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")
    monkeypatch.chdir(tmp_path)

    def run(*args: str, today: str = TODAY) -> tuple[int, str, str]:
        monkeypatch.setenv("MEDLEGAL_TODAY", today)
        code = main(["sittings", *args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def _oneuser_error(result: tuple[int, str, str]) -> str:
    code, out, err = result
    assert code == 1, out + err
    assert out == "" and len(err.splitlines()) == 1, err
    assert err.startswith("medlegal: ")
    return err.strip()


def _windows(stdout: str) -> list[tuple[str, ...]]:
    rows = []
    for line in stdout.splitlines():
        match = LINE.match(line)
        assert match, f"not a window line: {line!r}"
        rows.append(tuple(g or "" for g in match.groups()))
    return rows


def _add(medlegal: Run, *extra: str) -> str:
    return ok(medlegal("add", "--first", "2027-04-05", "--last", "2027-04-11", *extra))


# -- usage ------------------------------------------------------------------------------------------------


def test_help(medlegal: Run) -> None:
    for args in ([], ["list"], ["add"], ["edit"], ["remove"]):
        result = medlegal(*args, "--help")
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("usage: medlegal sittings")
    assert "--no-deadline" in result.stdout or "ID" in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["add", "--first", "2027-04-05"],
        ["remove", "one"],
        ["edit", "1", "--deadline", "2027-01-01", "--no-deadline"],
    ],
    ids=["nothing", "add-without-last", "remove-not-a-number", "deadline-and-no-deadline"],
)
def test_bad_usage_exits_2(medlegal: Run, args: list[str]) -> None:
    result = medlegal(*args)
    assert result.returncode == 2
    assert "usage: medlegal sittings" in result.stderr
    assert "Traceback" not in result.stderr


# -- the contract, as a subprocess ------------------------------------------------------------------------


def test_list_on_a_new_database_shows_the_seed_and_the_hint(medlegal: Run) -> None:
    result = medlegal("list")
    rows = _windows(ok(result))
    assert len(rows) == SEEDED
    assert rows[-1][1:4] == ("2024-04-06", "2024-04-12", "-")
    assert "Pearson VUE" in rows[-1][4]
    assert [r[1] for r in rows] == sorted(r[1] for r in rows)
    assert result.stderr.strip() == HINT  # stdout stays one line per window


def test_add_edit_remove(medlegal: Run, tmp_path: Path) -> None:
    new = str(SEEDED + 1)
    out = _add(medlegal, "--deadline", "2027-02-19", "--note", "Pearson VUE,  computer-based", "--source", "https://x")
    assert out == f"added {new}  2027-04-05..2027-04-11  deadline 2027-02-19  Pearson VUE, computer-based\n"
    listed = medlegal("list")
    assert _windows(ok(listed))[-1] == (new, "2027-04-05", "2027-04-11", "2027-02-19", "Pearson VUE, computer-based")
    assert listed.stderr == ""  # the new window starts 125 days after today

    out = ok(medlegal("edit", new, "--last", "2027-04-12", "--no-deadline", "--note", "8 days"))
    assert out == f"updated {new}  2027-04-05..2027-04-12  deadline -  8 days\n"
    assert _windows(ok(medlegal("list")))[-1] == (new, "2027-04-05", "2027-04-12", "-", "8 days")

    assert ok(medlegal("remove", new)) == f"removed {new}  2027-04-05..2027-04-12  deadline -  8 days\n"
    assert len(_windows(ok(medlegal("list")))) == SEEDED


def test_errors_are_one_line_and_exit_1(medlegal: Run) -> None:
    assert "'2027-13-05' is not a date; use YYYY-MM-DD" in user_error(
        medlegal("add", "--first", "2027-13-05", "--last", "2027-04-11")
    )
    assert f"the window must start after today ({TODAY})" in user_error(
        medlegal("add", "--first", "2026-11-20", "--last", "2026-11-25")
    )
    assert "there is no exam window with id 99" in user_error(medlegal("edit", "99", "--note", "x"))
    assert "there is no exam window with id 99" in user_error(medlegal("remove", "99"))
    assert len(_windows(ok(medlegal("list")))) == SEEDED


def test_medlegal_today_and_the_90_day_hint(medlegal: Run) -> None:
    _add(medlegal)  # 2027-04-05, 125 days after TODAY
    assert medlegal("list", env={"MEDLEGAL_TODAY": "2027-01-04"}).stderr == ""  # 91 days ahead
    assert medlegal("list", env={"MEDLEGAL_TODAY": "2027-01-05"}).stderr.strip() == HINT  # 90 days ahead
    late = medlegal("add", "--first", "2027-04-20", "--last", "2027-04-21", env={"MEDLEGAL_TODAY": "2027-05-01"})
    assert "start after today (2027-05-01)" in user_error(late)


def test_chat_admin_adds_a_window_and_a_physician_is_refused(medlegal: Run) -> None:
    add = "/sitting_add 2027-04-05 2027-04-11 2027-02-19 | Pearson VUE | https://www.dir.ca.gov/\n"
    admin = medlegal("chat", "--admin", stdin=f"/sittings\n{add}1\n")
    out = ok(admin)
    assert "The calendar needs updating." in out
    assert "Add this exam window?" in out and "1) ✅ Confirm" in out
    assert f"Added exam window #{SEEDED + 1}" in out

    physician = ok(medlegal("chat", "--user", "9", stdin=f"{add}/sitting_remove 1\n/sittings\n"))
    assert physician.count("Sorry, the exam calendar is kept by the community admins") == 3
    assert "Add this exam window?" not in physician
    assert len(_windows(ok(medlegal("list")))) == SEEDED + 1


# -- the rules, in-process --------------------------------------------------------------------------------


def test_add_migrates_a_new_database_first(cli: InProcess, tmp_path: Path) -> None:
    assert not (tmp_path / "m.db").exists()
    code, out, _ = cli("add", "--first", "2027-04-05", "--last", "2027-04-11")
    assert code == 0 and out == f"added {SEEDED + 1}  2027-04-05..2027-04-11  deadline -\n"
    assert (tmp_path / "m.db").exists()
    assert len(_windows(cli("list")[1])) == SEEDED + 1


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--first", "2027-04-05", "--last", "soon"], "'soon' is not a date"),
        (["--first", "2027-04-05", "--last", "2027-04-11", "--deadline", "2/19/2027"], "'2/19/2027' is not a date"),
        (["--first", "2026-11-20", "--last", "2026-11-25"], f"the window must start after today ({TODAY})"),
        (["--first", TODAY, "--last", "2026-12-05"], f"the window must start after today ({TODAY})"),
        (["--first", "2027-04-11", "--last", "2027-04-05"], "the last day is before the first day"),
        (["--first", "2027-04-05", "--last", "2027-08-05"], "longer than 60 days"),
        (["--first", "2027-04-05", "--last", "2027-04-11", "--deadline", "2027-04-05"], "deadline must be before"),
        (["--first", "2027-04-05", "--last", "2027-04-11", "--note", "x" * 301], "note is longer than 300"),
        (["--first", "2027-04-05", "--last", "2027-04-11", "--source", "x" * 501], "source is longer than 500"),
    ],
    ids=["not-a-date", "us-date", "past", "today", "last-before-first", "too-long", "deadline", "note", "source"],
)
def test_add_rejects_bad_input(cli: InProcess, args: list[str], says: str) -> None:
    assert says in _oneuser_error(cli("add", *args))
    assert len(_windows(cli("list")[1])) == SEEDED


def test_add_reports_every_problem_on_the_one_line(cli: InProcess) -> None:
    line = _oneuser_error(cli("add", "--first", "2026-11-05", "--last", "2026-11-01", "--deadline", "2026-12-19"))
    assert "start after today" in line and "last day is before" in line and "deadline must be before" in line


def test_add_refuses_a_duplicate_window(cli: InProcess) -> None:
    assert cli("add", "--first", "2027-04-05", "--last", "2027-04-11")[0] == 0
    again = cli("add", "--first", "2027-04-05", "--last", "2027-04-11", "--note", "again")
    assert f"window #{SEEDED + 1} already has these dates" in _oneuser_error(again)


def test_edit_changes_only_the_given_fields(cli: InProcess) -> None:
    cli("add", "--first", "2027-04-05", "--last", "2027-04-11", "--deadline", "2027-02-19", "--note", "Pearson VUE")
    new = str(SEEDED + 1)
    assert cli("edit", new, "--source", "https://www.dir.ca.gov/")[1] == (
        f"updated {new}  2027-04-05..2027-04-11  deadline 2027-02-19  Pearson VUE\n"
    )
    assert "deadline 2027-03-01  Pearson VUE" in cli("edit", new, "--deadline", "2027-03-01")[1]
    assert cli("edit", new, "--note", "")[1] == f"updated {new}  2027-04-05..2027-04-11  deadline 2027-03-01\n"


def test_edit_may_fix_the_note_of_a_past_window_but_not_its_dates(cli: InProcess) -> None:
    code, out, _ = cli("edit", "1", "--note", "Single-day paper exam")
    assert code == 0 and out.startswith("updated 1  2014-04-12..2014-04-12") and out.endswith("paper exam\n")
    assert "start after today" in _oneuser_error(cli("edit", "1", "--first", "2014-04-11"))


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["99", "--note", "x"], "there is no exam window with id 99"),
        (["4"], "nothing to change"),
        (["4", "--last", "2027-04-01"], "the last day is before the first day"),
        (["4", "--deadline", "2027-05-01"], "deadline must be before"),
        (["4", "--first", "2027-02-30"], "'2027-02-30' is not a date"),
        (["4", "--first", "2026-11-30"], "must start after today"),
    ],
    ids=["unknown-id", "nothing", "last-before-first", "deadline-after", "bad-date", "into-the-past"],
)
def test_edit_rejects_bad_input(cli: InProcess, args: list[str], says: str) -> None:
    cli("add", "--first", "2027-04-05", "--last", "2027-04-11")
    before = cli("list")[1]
    assert says in _oneuser_error(cli("edit", *args))
    assert cli("list")[1] == before


def test_remove_takes_past_windows_too(cli: InProcess) -> None:
    code, out, _ = cli("remove", "1")
    assert code == 0 and out.startswith("removed 1  2014-04-12..2014-04-12")
    assert "no exam window with id 1" in _oneuser_error(cli("remove", "1"))
    assert [r[0] for r in _windows(cli("list")[1])] == ["2", "3"]
