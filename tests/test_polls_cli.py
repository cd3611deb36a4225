"""`medlegal polls list|add FILE|close KEY` and /polls in `medlegal chat` (shared/interfaces.md).

The exit-code contract is checked on the installed command in a subprocess; the bad-input matrix goes through
`bot.cli.main` in-process, since each subprocess costs about a second.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.cli import main
from tests.cli_runner import Run, ok, runner, user_error

InProcess = Callable[..., tuple[int, str, str]]
SEEDED = ["ime_barriers", "ime_fee", "ime_case_types", "ime_qme_now"]
POLL = """
[[poll]]
key = "vendor"
question = "Which IME vendor do you use?"
choice = "multiple"
closes = 2026-12-31
options = [{ key = "alpha", label = "Alpha" }, { key = "beta", label = "Beta" }]
"""


@pytest.fixture
def medlegal(tmp_path: Path) -> Run:
    return runner(tmp_path, MEDLEGAL_TODAY="2026-11-29")


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> InProcess:
    for name in [k for k in os.environ if k.startswith("MEDLEGAL_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("MEDLEGAL_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")
    monkeypatch.setenv("MEDLEGAL_TODAY", "2026-11-29")
    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> tuple[int, str, str]:
        try:
            code = main(["polls", *args])
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_the_command_contract(medlegal: Run) -> None:
    listed = ok(medlegal("polls", "list")).splitlines()
    assert [line.split("  ")[0] for line in listed] == SEEDED
    assert listed[1] == "ime_fee  open  single  5 options  What do you charge for a standard IME?"
    assert user_error(medlegal("polls", "close", "nope")).startswith("medlegal: there is no poll with the key 'nope'")
    usage = medlegal("polls")
    assert usage.returncode == 2 and "usage: medlegal polls" in usage.stderr


def test_add_and_close(cli: InProcess, tmp_path: Path) -> None:
    (tmp_path / "vendor.toml").write_text(POLL)
    assert cli("add", "vendor.toml") == (0, "added vendor  Which IME vendor do you use?\n", "")
    code, _, err = cli("add", "vendor.toml")
    assert (code, err) == (1, "medlegal: vendor.toml: a poll with the key vendor exists already\n")
    assert cli("close", "ime_fee") == (0, "closed ime_fee  What do you charge for a standard IME?\n", "")
    assert cli("close", "ime_fee") == (1, "", "medlegal: poll ime_fee is already closed\n")
    listed = cli("list")[1].splitlines()
    assert listed[1].startswith("ime_fee  closed  single")
    assert listed[-1] == "vendor  open  multiple  2 options  …..2026-12-31  Which IME vendor do you use?"


@pytest.mark.parametrize(
    ("args", "content", "says"),
    [
        (["add", "p.json"], "{}", "medlegal: p.json: a poll file ends in .toml, .yaml or .yml"),
        (["add", "missing.toml"], None, "medlegal: cannot read missing.toml: No such file or directory"),
        (["add", "p.toml"], "[[poll]\n", "medlegal: p.toml: not valid TOML"),
        (["add", "p.yaml"], "key: x\nquestion: Which?\noptions: [{key: a, label: A}]\n", "options: Tuple should"),
        (["add", "p.yaml"], POLL.replace("vendor", "ime_fee"), "not valid YAML"),
        (["close", "nope"], None, "medlegal: there is no poll with the key 'nope'"),
    ],
    ids=["suffix", "missing", "toml", "one-option", "toml-as-yaml", "unknown-key"],
)
def test_user_errors_are_one_line_exit_1(
    cli: InProcess, tmp_path: Path, args: list[str], content: str | None, says: str
) -> None:
    if content is not None:
        (tmp_path / args[1]).write_text(content)
    code, out, err = cli(*args)
    assert code == 1 and out == "" and len(err.splitlines()) == 1
    assert says in err
    code, out, _ = cli("list")
    assert code == 0 and [line.split("  ")[0] for line in out.splitlines()] == SEEDED


def test_a_file_with_a_taken_key_adds_nothing(cli: InProcess, tmp_path: Path) -> None:
    (tmp_path / "two.toml").write_text(POLL + POLL.replace('key = "vendor"', 'key = "ime_fee"'))
    code, _, err = cli("add", "two.toml")
    assert code == 1 and "a poll with the key ime_fee exists already" in err
    assert "vendor" not in cli("list")[1]


def test_chat_offers_polls_and_start_links(medlegal: Run) -> None:
    out = ok(medlegal("chat", stdin="/polls\n2\n3\n/polls\n2\n1, 3\n"))
    assert "Community polls" in out and "Your answer: $2,001-3,500" in out
    assert "Results appear once 5 physicians have answered" in out
    assert "(type the numbers of all that apply, separated by commas)" in out
    assert "Your answer: Workers' compensation, Long-term disability" in out
    admin = ok(medlegal("chat", "--admin", stdin="/invite Pain Forum\n"))
    assert "https://t.me/YourBotUsername?start=pain_forum" in admin
