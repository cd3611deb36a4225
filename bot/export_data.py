"""The answers behind `medlegal export` and /export: the decision flow as built-in polls, plus community polls.

Every question of the flow (flows/data/questions.toml) is a poll `flow.<question key>` and the recommended
path is the poll `flow.path`. A physician counts with their latest completed flow, in the month it was
completed (in MEDLEGAL_TIMEZONE); a question the flow skipped for them counts them as a respondent who chose
nothing, so every flow poll has the same respondents in a month and none gives away who was skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from db.aggregates import CompletedFlow, completed_flows
from flows.aggregate import DefinedBy, Export, Month, Poll, Response, aggregate
from flows.definition import FlowDefinition, load_definition

Breakdown = dict[str, tuple[str, ...]]
FLOW_PREFIX = "flow."
PATH_POLL = "flow.path"
PATH_ORDER = ("qme", "ime", "hybrid", "not_yet")


class ExportError(ValueError):
    """A request that cannot be answered (bad month, unknown poll); the message is one line for the user."""


def flow_polls(defn: FlowDefinition) -> list[Poll]:
    polls = [
        Poll(FLOW_PREFIX + q.key, q.title, tuple((o.key, o.label) for o in q.options), q.multi) for q in defn.questions
    ]
    paths = tuple((p, defn.rules.paths[p].title) for p in PATH_ORDER if p in defn.rules.paths)
    polls.append(Poll(PATH_POLL, "Recommended path", paths))
    return polls


def defined_by(defn: FlowDefinition) -> DefinedBy:
    """The flow questions that are the breakdowns: specialty, and the licenses (California when active, and the
    other states held), so that a breakdown cell never shows a count those polls withhold (rule 5)."""
    other_states = {o.key: o.key for o in defn.question("other_states").options if o.key != "none"}
    return {
        "specialty": {FLOW_PREFIX + "specialty": {o.key: o.key for o in defn.question("specialty").options}},
        "license": {FLOW_PREFIX + "ca_license": {"active": "CA"}, FLOW_PREFIX + "other_states": other_states},
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


async def load_responses(
    session: AsyncSession,
    zone: ZoneInfo,
    *,
    sources: Mapping[int, str] | None = None,
    extra: Iterable[Response] = (),
    defn: FlowDefinition | None = None,
) -> list[Response]:
    """The flow's answers (with `sources`: user id -> start-link code) followed by `extra` (community polls)."""
    flows = await completed_flows(session)
    return [*flow_responses(flows, defn or load_definition(), zone, sources), *extra]


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


def build_export(responses: Sequence[Response], k: int, today: date, request: Request) -> Export:
    """The export for whole, finished months: a month still under way would change between two exports and
    the difference would show single answers. Defaults: from the first month with answers to last month."""
    since, until = period_of(request, today)
    known = list(dict.fromkeys(r.poll.key for r in responses))
    if request.poll is not None and request.poll not in known:
        listed = ", ".join(known) if known else "none yet"
        raise ExportError(f"unknown poll {request.poll!r}; polls with answers: {listed}")
    if since is None:
        months = [r.month for r in responses if r.month <= until]
        since = min(months) if months else until
    try:
        return aggregate(
            responses,
            k=k,
            since=since,
            until=until,
            by=request.by,
            poll=request.poll,
            defined_by=defined_by(load_definition()),
        )
    except ValueError as exc:
        raise ExportError(str(exc)) from None
