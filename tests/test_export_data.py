"""The flow's answers as built-in polls, community answers, periods, and the CSV/JSON layout of interfaces.md."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from bot.export_data import (
    NO_LINK,
    OPEN,
    PATH_POLL,
    SOURCE_POLL,
    ExportError,
    Request,
    build_export,
    community_response,
    community_responses,
    defined_by,
    flow_polls,
    flow_responses,
    period_of,
    profiles,
    progress_responses,
    source_responses,
)
from bot.export_files import COLUMNS, chart_name, csv_bytes, json_bytes
from db.aggregates import CompletedFlow
from db.polls import PollResponse
from flows.aggregate import Month, Poll
from flows.definition import load_definition

ZONE = ZoneInfo("America/Los_Angeles")
DEFN = load_definition()
TEXAS = {"profession": "md", "ca_license": "no", "other_states": ["TX", "NY"], "specialty": "nephro"}
CALIFORNIA = {"profession": "md", "ca_license": "active", "other_states": ["none"], "specialty": "ortho"}


def completed(user: int, answers: Mapping[str, object], path: str, when: datetime) -> CompletedFlow:
    return CompletedFlow(user, when, dict(answers), path)


def test_every_question_and_the_path_are_polls() -> None:
    keys = [p.key for p in flow_polls(DEFN)]
    assert keys == [f"flow.{q.key}" for q in DEFN.questions] + [PATH_POLL]
    path = flow_polls(DEFN)[-1]
    assert [k for k, _ in path.options] == ["qme", "ime", "hybrid", "not_yet"]
    assert next(p for p in flow_polls(DEFN) if p.key == "flow.other_states").multi


def test_flow_answers_become_responses_with_breakdowns_and_local_months() -> None:
    # 2026-10-01 03:00 UTC is still September in Los Angeles
    flows = [
        completed(7_000_000_001, TEXAS, "ime", datetime(2026, 10, 1, 3, tzinfo=UTC)),
        completed(7_000_000_002, CALIFORNIA, "qme", datetime(2026, 10, 2, 3, tzinfo=UTC)),
    ]
    responses = flow_responses(flows, DEFN, ZONE, sources={7_000_000_002: "club"})
    assert len(responses) == 2 * (len(DEFN.questions) + 1)
    texas = {r.poll.key: r for r in responses if r.respondent == 1}
    assert texas["flow.specialty"].chosen == ("nephro",)
    assert texas["flow.other_states"].chosen == ("TX", "NY")
    assert texas["flow.treatment_share"].chosen == ()  # skipped for them, still a respondent
    assert texas[PATH_POLL].chosen == ("ime",)
    assert texas["flow.specialty"].month == Month(2026, 9)
    assert dict(texas["flow.board"].breakdown) == {"specialty": ("nephro",), "license": ("TX", "NY"), "source": ()}
    california = next(r for r in responses if r.respondent == 2)
    assert dict(california.breakdown) == {"specialty": ("ortho",), "license": ("CA",), "source": ("club",)}
    assert {r.respondent for r in responses} == {1, 2}  # numbered afresh, never the Telegram id


def test_community_answers_take_the_flow_profile_and_the_source() -> None:
    poll = Poll("fees", "What do you charge for a standard IME?", (("lt1k", "Under $1,000"), ("1to2k", "$1,000-2,000")))
    flows = [completed(11, CALIFORNIA, "qme", datetime(2026, 9, 5, tzinfo=UTC))]
    answer = community_response(
        3, poll, ["1to2k", "forged"], date(2026, 9, 30), source="conf", profile=profiles(flows)[11]
    )
    assert answer.chosen == ("1to2k",) and answer.month == Month(2026, 9)
    assert dict(answer.breakdown) == {"specialty": ("ortho",), "license": ("CA",), "source": ("conf",)}
    bare = community_response(4, poll, ["lt1k"], date(2026, 9, 1))
    assert bare.cells("specialty") == ("none",) and bare.cells("source") == ("none",)


def test_periods_are_whole_finished_months() -> None:
    today = date(2026, 11, 29)
    assert period_of(Request(), today) == (None, Month(2026, 10))
    assert period_of(Request(since="2026-01", until="2026-03"), today) == (Month(2026, 1), Month(2026, 3))
    for request, message in [
        (Request(until="2026-11"), "2026-11 has not ended yet; periods are whole months up to 2026-10"),
        (Request(since="2026-10", until="2026-09"), "starts (2026-10) after it ends (2026-09)"),
        (Request(since="2026-1"), "is not a month"),
    ]:
        with pytest.raises(ExportError, match=re.escape(message)):
            period_of(request, today)


def _export() -> bytes:
    flows = [completed(i, CALIFORNIA, "qme", datetime(2026, 9, 10, tzinfo=UTC)) for i in range(6)]
    export = build_export(flow_responses(flows, DEFN, ZONE), 5, date(2026, 11, 29), Request(poll=PATH_POLL))
    return csv_bytes(export) + b"\x00" + json_bytes(export)


def test_csv_and_json_follow_the_interface() -> None:
    table, _, document = _export().partition(b"\x00")
    rows = list(csv.reader(io.StringIO(table.decode())))
    assert tuple(rows[0]) == COLUMNS
    title = {p: DEFN.rules.paths[p].title for p in ("qme", "ime", "hybrid", "not_yet")}
    period = ["2026-09-01", "2026-10-31"]  # from the first month with answers to the last finished one
    assert rows[1:] == [
        ["flow.path", "Recommended path", title["qme"], "all", "6", "1", "6", *period],
        ["flow.path", "Recommended path", title["ime"], "all", "<5", "", "6", *period],
        ["flow.path", "Recommended path", title["hybrid"], "all", "<5", "", "6", *period],
        ["flow.path", "Recommended path", title["not_yet"], "all", "<5", "", "6", *period],
    ]
    records = json.loads(document)
    assert [list(r) for r in records] == [list(COLUMNS)] * 4
    assert records[0]["count"] == 6 and records[0]["share"] == 1.0
    assert records[1]["count"] == "<5" and records[1]["share"] is None


def test_chart_names_are_safe_file_names() -> None:
    assert chart_name("flow.path") == "flow.path.png"
    assert chart_name("../etc/passwd") == ".._etc_passwd.png"


def test_community_rows_become_responses_with_the_flow_profile() -> None:
    options = (("a", "Yes"), ("b", "No"))
    rows = [
        PollResponse(1, "now", "Doing IME now?", options, ("a",), date(2026, 9, 3), "club", dict(CALIFORNIA)),
        PollResponse(2, "now", "Doing IME now?", options, ("b",), date(2026, 10, 1), None, None),
        PollResponse(1, "kinds", "Which kinds?", options, ("a", "b"), date(2026, 9, 4), "club", None, True),
    ]
    first, second, third = community_responses(rows)
    assert first.poll is second.poll and first.poll.key == "now" and third.poll.multi
    assert dict(first.breakdown) == {"specialty": ("ortho",), "license": ("CA",), "source": ("club",)}
    assert second.cells("specialty") == ("none",) and second.month == Month(2026, 10)
    for clash in ("flow.specialty", "source.link", "progress.qme"):
        with pytest.raises(ValueError, match="clashes"):
            community_responses([PollResponse(1, clash, "?", options, ("a",), date(2026, 9, 3), None)])


def test_the_start_link_poll_counts_finished_and_unfinished_and_defines_the_source_cells() -> None:
    links = [("club", "Ortho Club")]
    flows = [
        completed(11, CALIFORNIA, "qme", datetime(2026, 9, 5, tzinfo=UTC)),
        completed(12, TEXAS, "ime", datetime(2026, 9, 6, tzinfo=UTC)),
    ]
    attributed = {11: ("club", date(2026, 8, 30)), 13: ("club", date(2026, 10, 2))}
    responses = source_responses(flows, attributed, links, ZONE)
    assert [(r.chosen, r.month) for r in responses] == [
        (("club",), Month(2026, 9)),  # dated by the flow, not by the start
        ((NO_LINK,), Month(2026, 9)),
        (("club" + OPEN,), Month(2026, 10)),
    ]
    poll = responses[0].poll
    assert poll.key == SOURCE_POLL and [k for k, _ in poll.options] == ["club", "club:open", NO_LINK]
    # the finished ones add up to the flow's respondents, the others to this poll's respondents minus those
    assert poll.groups == (frozenset({"club", NO_LINK}), frozenset({"club:open"}))
    assert defined_by(DEFN, links)["source"] == {SOURCE_POLL: {"club": "club", NO_LINK: "none"}}


def test_the_funnel_polls_place_each_flow_respondent_on_their_tracks() -> None:
    flows = [
        completed(21, CALIFORNIA, "qme", datetime(2026, 9, 5, tzinfo=UTC)),
        completed(22, TEXAS, "hybrid", datetime(2026, 9, 6, tzinfo=UTC)),
        completed(23, TEXAS, "not_yet", datetime(2026, 9, 7, tzinfo=UTC)),
    ]
    responses = progress_responses(flows, {21: frozenset({"eligible"}), 22: frozenset({"ime_source"})}, ZONE)
    chosen = {(r.poll.key, r.respondent): r.chosen for r in responses}
    assert chosen == {
        ("progress.qme", 1): ("course",), ("progress.ime", 1): (),
        ("progress.qme", 2): ("eligible",), ("progress.ime", 2): ("ime_report",),
        ("progress.qme", 3): (), ("progress.ime", 3): (),
    }  # fmt: skip
    qme = responses[0].poll
    assert qme.groups == (frozenset(k for k, _ in qme.options),) and qme.options[-1] == ("qme_done", "All done")
