"""`medlegal flow check` passes on the shipped flow and names each problem in a deliberately broken one."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path
from typing import Any

import pytest

from flows.definition import DATA_DIR, build_definition
from flows.engine import FlowEngine
from flows.flowcheck import check_flow
from flows.recommend import recommend
from tests.cli_runner import runner


def _load(name: str) -> dict[str, Any]:
    return tomllib.loads((DATA_DIR / name).read_text(encoding="utf-8"))


def _raw() -> tuple[dict[str, Any], dict[str, Any]]:
    return _load("questions.toml"), _load("rules.toml")


def _question(questions: dict[str, Any], key: str) -> dict[str, Any]:
    return next(q for q in questions["questions"] if q["key"] == key)


def test_shipped_flow_passes_and_each_found_path_replays() -> None:
    report = check_flow()
    assert report.ok, report.problems
    assert set(report.paths) == {"qme", "ime", "hybrid", "not_yet"}
    assert report.questions == 14 and report.options == 72
    defn = build_definition(*_raw())
    engine = FlowEngine(defn)
    for path, answers in report.paths.items():  # the witnesses are real answer sets the engine accepts
        state = engine.start()
        while not state.complete:
            assert state.current is not None
            state = engine.answer(state, state.current, answers[state.current])
        assert recommend(state.answers, defn).path.value == path


def test_a_question_nobody_is_asked_is_found() -> None:
    questions, rules = _raw()
    _question(questions, "board")["when"] = {"all": ["md_or_do", {"not": "md_or_do"}]}
    problems = check_flow(build_definition(questions, rules)).problems
    assert problems == ["question board is never asked: its skip rule is false for every answer"]


def test_a_path_nobody_reaches_is_found() -> None:
    questions, rules = _raw()
    rules["ime_requires"].append({"when": {"key": "profession", "in": ["acupuncturist"]}, "unmet": "x"})
    problems = check_flow(build_definition(questions, rules)).problems
    assert "path ime is never recommended, whatever the answers" in problems
    assert "path hybrid is never recommended, whatever the answers" in problems
    assert not any("question" in p for p in problems)


def test_an_option_leading_nowhere_is_found() -> None:
    questions, rules = _raw()
    specialty = _question(questions, "specialty")
    specialty["options"][0]["when"] = {
        "all": [{"key": "ca_license", "in": ["no"]}, {"key": "ca_license", "in": ["active"]}]
    }
    problems = check_flow(build_definition(questions, rules)).problems
    assert problems == ["option specialty.ortho leads nowhere: no answers show it and reach a recommendation"]


def test_a_question_left_without_choices_is_found() -> None:
    questions, rules = _raw()
    for option in _question(questions, "in_person_ca")["options"]:
        option["when"] = {"key": "profession", "not_in": ["do"]}
    problems = check_flow(build_definition(questions, rules)).problems
    assert len(problems) == 1 and problems[0].startswith("question in_person_ca can be reached with no option")
    assert "profession=do" in problems[0]


def test_cli_check_exit_codes(tmp_path: Path) -> None:
    run = runner(tmp_path)
    ok = run("flow", "check")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("flow ok: 14 questions and 72 options all reachable") and ok.stderr == ""

    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copy(DATA_DIR / "rules.toml", broken / "rules.toml")
    text = (DATA_DIR / "questions.toml").read_text(encoding="utf-8")
    (broken / "questions.toml").write_text(
        text.replace('when = "md_or_do"', 'when = { all = [ "md_or_do", { not = "md_or_do" } ] }'), encoding="utf-8"
    )
    bad = run("flow", "check", "--data", str(broken))
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr == "medlegal: question board is never asked: its skip rule is false for every answer\n"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace('when = "md_or_do"', 'when = "md_or_d0"'), "unknown condition(s) ['md_or_d0']"),
        (lambda t: t + "\n[[questions\n", "is not valid TOML"),
    ],
)
def test_cli_check_reports_data_that_does_not_load(tmp_path: Path, edit: Any, message: str) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    shutil.copy(DATA_DIR / "rules.toml", folder / "rules.toml")
    (folder / "questions.toml").write_text(edit((DATA_DIR / "questions.toml").read_text(encoding="utf-8")))
    result = runner(tmp_path)("flow", "check", "--data", str(folder))
    assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr
