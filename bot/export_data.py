"""The answers behind `medlegal export` and /export: the decision flow as built-in polls, plus community polls.

Every question of the flow (flows/data/questions.toml) is a poll `flow.<question key>` and the recommended
path is the poll `flow.path`. A physician counts with their latest completed flow, in the month it was
completed (in MEDLEGAL_TIMEZONE); a question the flow skipped for them counts them as a respondent who chose
nothing, so every flow poll has the same respondents in a month and none gives away who was skipped.

Built in beside them, so that /sources and /funnel publish nothing the export does not (one rule, not two):
- `source.link`: which start link each physician arrived through, and whether they finished the questions. Its
  respondents are the flow's (dated by their flow) plus those who arrived through a link without finishing
  (dated by the day they started). The flow's `--by source` cells are defined by it (rule 5).
- `progress.qme` and `progress.ime`: the funnel, the first step of the track each flow respondent has not
  ticked ("All steps done" past the last); physicians on the other track chose nothing.
Community polls (db.polls) follow, broken down by the same person's flow profile and start link.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from db import polls as poll_store
from db import progress as progress_store
from db import sources as source_store
from db.aggregates import CompletedFlow, completed_flows
from flows.aggregate import (
    NONE,
    DefinedBy,
    Export,
    Month,
    MonthCells,
    Poll,
    Response,
    aggregate_cells,
    count_responses,
)
from flows.definition import FlowDefinition, load_definition
from flows.funnel import TRACK_TITLES, position
from flows.progress_steps import Steps, load_steps, tracks
from flows.recommend import Path

Breakdown = dict[str, tuple[str, ...]]
FLOW_PREFIX = "flow."
PATH_POLL = "flow.path"
PATH_ORDER = ("qme", "ime", "hybrid", "not_yet")
SOURCE_POLL = "source.link"
OPEN = ":open"
"""Suffix of a link's option for physicians who arrived through it and have not finished the questions."""
NO_LINK = "~none"
"""The option of physicians who finished without a start link (no link code can contain ~)."""
PROGRESS_PREFIX = "progress."
BUILT_IN = (FLOW_PREFIX, "source.", PROGRESS_PREFIX)
"""Key prefixes of built-in polls; community poll keys (flows.polls.KEY_PATTERN) have no dot, so never clash."""
Links = Sequence[tuple[str, str]]


class ExportError(ValueError):
    """A request that cannot be answered (bad month, unknown poll); the message is one line for the user."""


def flow_polls(defn: FlowDefinition) -> list[Poll]:
    polls = [
        Poll(FLOW_PREFIX + q.key, q.title, tuple((o.key, o.label) for o in q.options), q.multi) for q in defn.questions
    ]
    paths = tuple((p, defn.rules.paths[p].title) for p in PATH_ORDER if p in defn.rules.paths)
    polls.append(Poll(PATH_POLL, "Recommended path", paths))
    return polls


def source_poll(links: Links) -> Poll:
    """Per link: finished the questions, not (yet); and finished without a link. The finished options add up to
    the flow's respondents, a published figure, and so the unfinished ones to this poll's respondents minus it:
    each is a group (rule 6)."""
    options: list[tuple[str, str]] = []
    for code, name in links:
        options += [(code, f"{name}: finished"), (code + OPEN, f"{name}: not finished yet")]
    options.append((NO_LINK, "No start link: finished"))
    finished = frozenset(key for key, _ in options if not key.endswith(OPEN))
    unfinished = frozenset(key for key, _ in options if key.endswith(OPEN))
    groups = (finished, unfinished) if unfinished else (finished,)  # respondents minus finished: the unfinished
    return Poll(SOURCE_POLL, "Start link and whether the questions were finished", tuple(options), groups=groups)


def progress_polls(steps: Steps) -> list[Poll]:
    """One poll per track; its options add up to the physicians on the track (flow.path): a group (rule 6)."""
    polls = []
    for track in ("qme", "ime"):
        options = (*((s.key, s.label) for s in steps.steps if s.track == track), (f"{track}_done", "All done"))
        groups = (frozenset(key for key, _ in options),)
        polls.append(Poll(PROGRESS_PREFIX + track, f"{TRACK_TITLES[track]}: next step", options, groups=groups))
    return polls


def defined_by(defn: FlowDefinition, links: Links = ()) -> DefinedBy:
    """The polls that are the breakdowns: the flow's specialty, its licenses (California when active, and the
    other states held), and the start-link poll, so that a breakdown cell never shows a count they withhold
    (rule 5)."""
    other_states = {o.key: o.key for o in defn.question("other_states").options if o.key != "none"}
    return {
        "specialty": {FLOW_PREFIX + "specialty": {o.key: o.key for o in defn.question("specialty").options}},
        "license": {FLOW_PREFIX + "ca_license": {"active": "CA"}, FLOW_PREFIX + "other_states": other_states},
        "source": {SOURCE_POLL: {code: code for code, _ in links} | {NO_LINK: NONE}},
    }


def _keys(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple):
        return tuple(v for v in value if isinstance(v, str))
    return ()


def breakdown_of(answers: Mapping[str, object], source: str | None) -> Breakdown:
    """specialty (one), license (California when active, plus the other states held) and source (one)."""
    licenses = (("CA",) if answers.get("ca_license") == "active" else ()) + tuple(
        s for s in _keys(answers.get("other_states")) if s != "none"
    )
    return {
        "specialty": _keys(answers.get("specialty"))[:1],
        "license": licenses,
        "source": (source,) if source else (),
    }


def flow_responses(
    flows: Iterable[CompletedFlow], defn: FlowDefinition, zone: ZoneInfo, sources: Mapping[int, str] | None = None
) -> list[Response]:
    """One Response per completed flow and flow poll; respondents are numbered afresh, never by user id."""
    polls = flow_polls(defn)
    out: list[Response] = []
    for number, flow in enumerate(flows, start=1):
        month = Month.of(flow.completed_at.astimezone(zone).date())
        breakdown = breakdown_of(flow.answers, (sources or {}).get(flow.user_id))
        for poll in polls:
            value = flow.path if poll.key == PATH_POLL else flow.answers.get(poll.key.removeprefix(FLOW_PREFIX))
            valid = {key for key, _ in poll.options}
            chosen = tuple(k for k in _keys(value) if k in valid)
            out.append(Response(number, poll, chosen, month, breakdown))
    return out


def source_responses(
    flows: Sequence[CompletedFlow], attributed: Mapping[int, tuple[str, date]], links: Links, zone: ZoneInfo
) -> list[Response]:
    """The start-link poll: every completed flow (in its month) and every attributed physician without one (in
    the month they started). The source breakdown stays empty: the poll itself is the source."""
    poll = source_poll(links)
    out: list[Response] = []
    finished = {flow.user_id for flow in flows}
    for number, flow in enumerate(flows, start=1):
        code = attributed.get(flow.user_id, (NO_LINK, None))[0]
        breakdown = breakdown_of(flow.answers, None)
        out.append(Response(number, poll, (code,), Month.of(flow.completed_at.astimezone(zone).date()), breakdown))
    number = len(flows)
    for user_id, (code, day) in attributed.items():
        if user_id not in finished:
            number += 1
            out.append(Response(number, poll, (code + OPEN,), Month.of(day)))
    return out


def progress_responses(
    flows: Sequence[CompletedFlow], ticked: Mapping[int, frozenset[str]], zone: ZoneInfo, steps: Steps | None = None
) -> list[Response]:
    """The funnel polls: every completed flow, with the first step not ticked on each of its path's tracks."""
    steps = steps or load_steps()
    polls = progress_polls(steps)
    out: list[Response] = []
    for number, flow in enumerate(flows, start=1):
        month = Month.of(flow.completed_at.astimezone(zone).date())
        on = tracks(Path(flow.path)) if flow.path in PATH_ORDER else ()
        breakdown = breakdown_of(flow.answers, None)
        for poll in polls:
            track = poll.key.removeprefix(PROGRESS_PREFIX)
            chosen = (position(track, ticked.get(flow.user_id, frozenset()), steps),) if track in on else ()
            out.append(Response(number, poll, chosen, month, breakdown))
    return out


def community_responses(rows: Iterable[poll_store.PollResponse]) -> list[Response]:
    """Community answers, broken down by the respondent's flow profile and start link."""
    polls: dict[str, Poll] = {}
    out = []
    for row in rows:
        if row.poll.startswith(BUILT_IN):
            raise ValueError(f"community poll key {row.poll!r} clashes with the built-in polls")
        poll = polls.setdefault(row.poll, Poll(row.poll, row.question, row.options, row.multi))
        profile = breakdown_of(row.profile, None) if row.profile is not None else None
        out.append(
            community_response(row.respondent, poll, row.chosen, row.answered_on, source=row.source, profile=profile)
        )
    return out


def profiles(flows: Iterable[CompletedFlow], sources: Mapping[int, str] | None = None) -> dict[int, Breakdown]:
    """user id -> breakdown values from the latest completed flow, to break community polls down the same way."""
    return {flow.user_id: breakdown_of(flow.answers, (sources or {}).get(flow.user_id)) for flow in flows}


def community_response(
    respondent: int,
    poll: Poll,
    chosen: Iterable[str],
    day: date,
    *,
    source: str | None = None,
    profile: Breakdown | None = None,
) -> Response:
    """One answer to a community poll (polls helper: db.polls.poll_responses), dated to its month only.

    `profile` (from `profiles`) adds the respondent's specialty and license; `source` their start link.
    """
    breakdown = dict(profile or {"specialty": (), "license": ()})
    breakdown["source"] = (source,) if source else ()
    valid = {key for key, _ in poll.options}
    return Response(respondent, poll, tuple(k for k in chosen if k in valid), Month.of(day), breakdown)


@dataclass(frozen=True)
class Answers:
    """Everything the export counts, as anonymous responses, and the start links (the source poll's options)."""

    responses: list[Response]
    links: tuple[tuple[str, str], ...]


async def load_answers(session: AsyncSession, zone: ZoneInfo, defn: FlowDefinition | None = None) -> Answers:
    """What `medlegal export`, /export, /sources and /funnel all count: the flow with its start links, the
    start-link and funnel polls, and the community polls. User ids are joined here and go no further."""
    flows = await completed_flows(session)
    attributed = await source_store.attributions(session)
    links = tuple(await source_store.links(session))
    sources = {user_id: code for user_id, (code, _) in attributed.items()}
    responses = [
        *flow_responses(flows, defn or load_definition(), zone, sources),
        *source_responses(flows, attributed, links, zone),
        *progress_responses(flows, await progress_store.ticked_by_user(session), zone),
        *community_responses(await poll_store.poll_responses(session)),
    ]
    return Answers(responses, links)


def last_finished_month(today: date) -> Month:
    return Month.of(today).previous()


@dataclass(frozen=True)
class Request:
    since: str | None = None
    until: str | None = None
    poll: str | None = None
    by: str | None = None


def period_of(request: Request, today: date) -> tuple[Month | None, Month]:
    """The requested months, checked: (since, or None for "the first month with answers"; until)."""
    finished = last_finished_month(today)
    try:
        until = Month.parse(request.until) if request.until else finished
        since = Month.parse(request.since) if request.since else None
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    if until > finished:
        raise ExportError(f"{until} has not ended yet; periods are whole months up to {finished}")
    if since is not None and since > until:
        raise ExportError(f"the period starts ({since}) after it ends ({until})")
    return since, until


def build_export(
    answers: Sequence[Response] | MonthCells, k: int, today: date, request: Request, links: Links = ()
) -> Export:
    """The export for whole, finished months: a month still under way would change between two exports and
    the difference would show single answers. Defaults: from the first month with answers to last month.

    `answers` are the month-cells counted in SQL (bot.export_cells.load_cells, by `request.by`) or responses."""
    since, until = period_of(request, today)
    cells = answers if isinstance(answers, MonthCells) else count_responses(answers, request.by)
    known = cells.answered()
    if request.poll is not None and request.poll not in known:
        listed = ", ".join(known) if known else "none yet"
        raise ExportError(f"unknown poll {request.poll!r}; polls with answers: {listed}")
    if since is None:
        months = [m for m in cells.months() if m <= until]
        since = min(months) if months else until
    try:
        return aggregate_cells(
            cells,
            k=k,
            since=since,
            until=until,
            by=request.by,
            poll=request.poll,
            defined_by=defined_by(load_definition(), links),
        )
    except ValueError as exc:
        raise ExportError(str(exc)) from None
