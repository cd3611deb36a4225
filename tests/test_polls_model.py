"""The poll model and its files, the admins' chat format, selection masks and the peer-figure suppression rule."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.polls import (
    Poll,
    PollFileError,
    from_mask,
    load_polls,
    parse_poll_text,
    parse_polls,
    peer_figures,
    seed_polls,
    to_mask,
    unique_key,
)

GOOD_TOML = """
[[poll]]
key = "fee"
question = "What do you charge for a standard IME?"
options = [{ key = "low", label = "Under $1,000" }, { key = "high", label = "Over $1,000" }]

[[poll]]
key = "types"
question = "Which case types?"
choice = "multiple"
status = "closed"
opens = 2026-01-01
closes = 2026-02-01
options = [{ key = "wc", label = "Workers' compensation" }, { key = "pi", label = "Personal injury" }]
"""

GOOD_YAML = """
poll:
  - key: fee
    question: What do you charge for a standard IME?
    options:
      - {key: low, label: "Under $1,000"}
      - {key: high, label: "Over $1,000"}
"""


def count_choices(answers: list[tuple[str, ...]]) -> tuple[dict[str, int], int]:
    """Option counts and respondents from each respondent's chosen keys (what SQL counts for stored answers)."""
    counts: dict[str, int] = {}
    for chosen in answers:
        for key in set(chosen):
            counts[key] = counts.get(key, 0) + 1
    return counts, len(answers)


def _poll(choice: str = "single", n: int = 4) -> Poll:
    options = [{"key": f"o{i}", "label": f"Option {i}"} for i in range(n)]
    return Poll.model_validate({"key": "p", "question": "Which one?", "options": options, "choice": choice})


def test_the_seed_has_the_four_polls_the_issue_names() -> None:
    polls = {p.key: p for p in seed_polls()}
    assert set(polls) == {"ime_barriers", "ime_fee", "ime_case_types", "ime_qme_now"}
    assert [o.label for o in polls["ime_fee"].options][:4] == [
        "Under $1,000",
        "$1,000-2,000",
        "$2,001-3,500",
        "Over $3,500",
    ]
    assert polls["ime_case_types"].multi and not polls["ime_qme_now"].multi
    assert all(p.is_open(date(2026, 11, 29)) for p in polls.values())


def test_toml_and_yaml_files_load(tmp_path: Path) -> None:
    (tmp_path / "p.toml").write_text(GOOD_TOML)
    (tmp_path / "p.yml").write_text(GOOD_YAML)
    fee, types = load_polls(tmp_path / "p.toml")
    assert fee.choice == "single" and fee.status == "open" and fee.label_of("low") == "Under $1,000"
    assert types.multi and types.status == "closed" and types.closes == date(2026, 2, 1)
    assert load_polls(tmp_path / "p.yml") == [fee]
    single = "key: one\nquestion: One poll at the top level?\noptions: [{key: a, label: A}, {key: b, label: B}]\n"
    assert parse_polls(single, "yaml")[0].key == "one"


@pytest.mark.parametrize(
    ("text", "fmt", "says"),
    [
        ("[[poll]\nkey=", "toml", "p: not valid TOML"),
        ("poll: [", "yaml", "p: not valid YAML"),
        ("", "yaml", "p: no poll found"),
        ("poll = 3", "toml", "p: `poll` must be a list of polls"),
        ("poll: [3]", "yaml", "p: poll 1 is not a table of fields"),
        (GOOD_TOML.replace('key = "fee"', 'key = "Fee Poll"'), "toml", "p: poll 1 (Fee Poll): key: String should"),
        (GOOD_TOML.replace('key = "types"', 'key = "fee"'), "toml", "poll keys must differ; repeated: fee"),
        (GOOD_TOML.replace('choice = "multiple"', 'choice = "many"'), "toml", "poll 2 (types): choice: Input should"),
        (GOOD_TOML.replace("closes = 2026-02-01", "closes = 2025-02-01"), "toml", "closes (2025-02-01) is before"),
        (GOOD_TOML.replace('key = "pi"', 'key = "wc"'), "toml", "option keys must differ; repeated: wc"),
        (GOOD_TOML.replace('question = "Which case types?"\n', ""), "toml", "poll 2 (types): question: Field required"),
        (GOOD_TOML.replace("status", "state"), "toml", "state: Extra inputs are not permitted"),
        (
            GOOD_YAML.replace('      - {key: high, label: "Over $1,000"}\n', ""),
            "yaml",
            "options: Tuple should have at least 2 items",
        ),
    ],
)
def test_bad_files_say_what_and_where(text: str, fmt: str, says: str) -> None:
    with pytest.raises(PollFileError) as info:
        parse_polls(text, fmt, "p")  # type: ignore[arg-type]
    assert says in str(info.value)
    assert "\n" not in str(info.value)


def test_file_names(tmp_path: Path) -> None:
    with pytest.raises(PollFileError, match=r"ends in \.toml, \.yaml or \.yml"):
        load_polls(tmp_path / "p.json")
    with pytest.raises(PollFileError, match=r"cannot read .*missing\.toml"):
        load_polls(tmp_path / "missing.toml")


def test_open_depends_on_status_and_dates() -> None:
    poll = _poll().model_copy(update={"opens": date(2026, 3, 1), "closes": date(2026, 3, 31)})
    assert not poll.is_open(date(2026, 2, 28))
    assert poll.is_open(date(2026, 3, 1)) and poll.is_open(date(2026, 3, 31))
    assert not poll.is_open(date(2026, 4, 1))
    assert not poll.model_copy(update={"status": "closed"}).is_open(date(2026, 3, 15))


def test_chat_format() -> None:
    poll = parse_poll_text("What do you charge?\n- Under $1,000\n- $1,000-2,000\nmultiple\n", {"what_do_you_charge"})
    assert poll.key == "what_do_you_charge_2" and poll.multi
    pairs = [(o.key, o.label) for o in poll.options]
    assert pairs == [("under_1_000", "Under $1,000"), ("1_000_2_000", "$1,000-2,000")]
    one_line = parse_poll_text("Which case types? | Personal injury | Disability")
    assert not one_line.multi and [o.label for o in one_line.options] == ["Personal injury", "Disability"]
    assert [o.key for o in parse_poll_text("Q??\n$$$\n€€€").options] == ["o1", "o2"]
    assert [o.key for o in parse_poll_text("Which?\nA b\na-b").options] == ["a_b", "a_b_2"]
    with pytest.raises(ValueError, match="a question and at least two options"):
        parse_poll_text("Only a question?\nOne option")
    with pytest.raises(ValueError, match="option labels must differ"):
        parse_poll_text("Which?\nYes\nyes")
    with pytest.raises(ValueError, match="at most 12 items"):
        parse_poll_text("Which?\n" + "\n".join(f"Option {i}" for i in range(13)))


def test_unique_key_stays_within_the_limit() -> None:
    base = "x" * 32
    assert unique_key(base, {base}) == "x" * 30 + "_2"
    assert len(unique_key(base, {base, "x" * 30 + "_2"})) == 32


@given(st.sets(st.integers(0, 5)))
def test_masks_round_trip(indexes: set[int]) -> None:
    poll = _poll("multiple", 6)
    keys = tuple(f"o{i}" for i in sorted(indexes))
    assert from_mask(poll, to_mask(poll, keys)) == keys


def test_figures_withheld_below_k_and_small_cells_shown_as_below_k() -> None:
    poll = _poll("multiple")
    assert peer_figures(poll, {"o0": 4}, 4, 5).withheld
    figures = peer_figures(poll, {"o0": 6, "o1": 2}, 8, 5)
    assert not figures.withheld
    shown = {c.key: c.shown(5) for c in figures.cells}
    assert shown == {"o0": "75%", "o1": "<5", "o2": "<5", "o3": "<5"}
    assert peer_figures(poll, {"o0": 3}, 3, 1).withheld is False  # k is never below 3
    assert peer_figures(poll, {"o0": 2}, 2, 1).withheld


def test_single_choice_hides_a_second_cell_when_one_could_be_recovered() -> None:
    figures = peer_figures(_poll(n=3), {"o0": 20, "o1": 2, "o2": 7}, 29, 5)
    shown = {c.key: c.shown(5) for c in figures.cells}
    assert shown == {"o0": "69%", "o1": "<5", "o2": "withheld"}


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.lists(st.integers(0, 4), max_size=5), min_size=0, max_size=40),
    st.booleans(),
    st.integers(3, 8),
)
def test_no_published_cell_is_below_k_nor_recoverable(raw: list[list[int]], multi: bool, k: int) -> None:
    poll = _poll("multiple" if multi else "single", 5)
    answers = [tuple(f"o{i}" for i in (chosen if multi else chosen[:1])) for chosen in raw if chosen]
    counts, respondents = count_choices(answers)
    figures = peer_figures(poll, counts, respondents, k)
    if respondents < k:
        assert figures.withheld and figures.cells == ()
        return
    for cell in figures.cells:
        assert cell.count is None or cell.count >= k
        assert (cell.count is None) == (cell.share is None)
        assert cell.count is None or cell.count == counts.get(cell.key, 0)
    hidden = [c for c in figures.cells if c.count is None]
    if not multi and hidden:
        # the hidden cells add up to what the others leave: with two or more, no single one can be worked out
        assert len(hidden) >= 2
        left = respondents - sum(c.count or 0 for c in figures.cells)
        assert left == sum(counts.get(c.key, 0) for c in hidden)
