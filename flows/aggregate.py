"""Anonymised aggregates of poll answers: counts, shares and respondents per poll, option and breakdown cell.

Pure logic (no bot, no database): the input is one `Response` per respondent and poll, the output `Export` rows
that may be published. The anonymity rule (also in the README, "Anonymity rule"):

1. The unit is the *month-cell*: one poll, one breakdown cell (or "all"), one calendar month. Each respondent
   counts once per poll, in the month of their answer.
2. A month-cell is published only when at least k people answered in it. Inside it an option count below k is
   withheld ("<k"). For a single-choice poll the withheld options add up to respondents minus the shown counts,
   so that remainder must itself be 0 or at least k (and must not pin every withheld count at k-1); while it is
   not, the smallest shown count is withheld too.
3. Every published figure over a period is the sum of the published parts of its month-cells; withheld parts and
   dropped month-cells count as zero everywhere (counts, respondents and shares alike). A total whose published
   parts add up to 0 is shown "<k". So the difference between the same figure over two nested whole-month
   periods is a sum of published month figures, each 0 or at least k: never a small number.
4. What a published cell leaves of the "all" month-cell (respondents, each count "all" shows, and for single
   choice the rule-2 remainder) must be 0 or at least k, else the cell is withheld. For a breakdown whose cells
   partition the respondents (one value each: specialty, source) the same holds for what all published cells
   of the month leave together; while it does not, the smallest of them is withheld too. So an export without
   breakdown minus cells of one with a breakdown reveals no small group either. (License cells overlap, one per
   state held, so only the single-cell check applies.)
5. When a breakdown is itself the answer to a poll (the flow's specialty question, its license questions, the
   built-in start-link poll), a cell's respondents in a month would tell that poll's count for the value: the
   cell is shown (before rule 4) only in months where that poll's "all" month-cell shows the count. The "none"
   cell is such a count only when the defining poll maps an option to "none" (the start-link poll does).
6. A single-choice poll may name option groups whose total another published figure tells (the steps of the QME
   track add up to the physicians whose path is QME or hybrid): a month-cell where a group's total is below k
   (and not 0) is dropped, and within each group the withheld counts are complemented as in rule 2, so that the
   total minus the group's shown counts is 0 or at least k too.

A count of 0 is withheld like any count below k. When a remainder is 0 it shows that the withheld options of
that month-cell were chosen by nobody; a zero singles out no one, so the rule allows that.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

K_FLOOR = 3
"""The smallest k allowed: below it, a published count of 1 or 2 could name a person."""
ALL = "all"
NONE = "none"
"""The breakdown cell of respondents without a value (no start link, no completed flow, no license)."""
DIMENSIONS = ("specialty", "license", "source")
PARTITIONS = ("specialty", "source")
"""Breakdowns with at most one value per respondent: their cells add up to the "all" row (rule 4). A license
breakdown has a cell per state held, so its cells overlap and add up to nothing published."""

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


@dataclass(frozen=True, order=True)
class Month:
    """A calendar month: the finest time the aggregates know."""

    year: int
    month: int

    def __post_init__(self) -> None:
        if not 1 <= self.month <= 12 or not 1 <= self.year <= 9999:
            raise ValueError(f"not a month: {self.year:04d}-{self.month:02d}")

    @classmethod
    def parse(cls, text: str) -> Month:
        """`YYYY-MM`; anything else is a ValueError with a message fit for the user."""
        match = _MONTH.match(text.strip())
        if not match:
            raise ValueError(f"{text!r} is not a month; use YYYY-MM, e.g. 2026-01")
        try:
            return cls(int(match.group(1)), int(match.group(2)))
        except ValueError:
            raise ValueError(f"{text!r} is not a month; use YYYY-MM with a month from 01 to 12") from None

    @classmethod
    def of(cls, day: date) -> Month:
        return cls(day.year, day.month)

    def next(self) -> Month:
        return Month(self.year + self.month // 12, self.month % 12 + 1)

    def previous(self) -> Month:
        return Month(self.year - (self.month == 1), 12 if self.month == 1 else self.month - 1)

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def last_day(self) -> date:
        return self.next().first_day - timedelta(days=1)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


@dataclass(frozen=True)
class Poll:
    """A question with its options in order; `multi` when a respondent may choose several."""

    key: str
    question: str
    options: tuple[tuple[str, str], ...]
    """(option key, label) pairs in display order."""
    multi: bool = False
    groups: tuple[frozenset[str], ...] = ()
    """Option sets whose total may be published elsewhere (rule 6); single choice only."""

    def label(self, option: str) -> str:
        return dict(self.options).get(option, option)


@dataclass(frozen=True, eq=False)
class Response:
    """One respondent's answer to one poll.

    `respondent` is any opaque number (never published): it only makes sure a person counts once per poll.
    `chosen` may be empty (a flow question that was not asked): the person still counts among the respondents.
    `breakdown` maps a dimension (specialty, license, source) to the person's values; missing or empty is "none".
    """

    respondent: int
    poll: Poll
    chosen: tuple[str, ...]
    month: Month
    breakdown: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for dimension in PARTITIONS:
            if len(set(self.breakdown.get(dimension, ()))) > 1:
                raise ValueError(f"a respondent has at most one {dimension}")

    def cells(self, dimension: str | None) -> tuple[str, ...]:
        if dimension is None:
            return (ALL,)
        values = tuple(dict.fromkeys(self.breakdown.get(dimension, ())))
        return values or (NONE,)


@dataclass(frozen=True)
class Row:
    """One published line: a suppressed count is None (written "<k"), and so is its share."""

    poll: str
    question: str
    option: str
    breakdown: str
    count: int | None
    share: float | None
    respondents: int
    period_start: date
    period_end: date
    option_key: str = ""


@dataclass(frozen=True)
class Export:
    rows: tuple[Row, ...]
    k: int
    since: Month
    until: Month
    by: str | None = None

    @property
    def suppressed(self) -> str:
        return f"<{self.k}"

    def polls(self) -> list[str]:
        return list(dict.fromkeys(r.poll for r in self.rows))

    def rows_of(self, poll: str) -> list[Row]:
        return [r for r in self.rows if r.poll == poll]


def check_k(k: int) -> int:
    if k < K_FLOOR:
        raise ValueError(f"k must be at least {K_FLOOR}, not {k}")
    return k


# -- month-cells --------------------------------------------------------------------------------------------------
@dataclass
class Block:
    """One month-cell's respondents and, per option, how many of them chose it."""

    n: int = 0
    counts: Counter[str] = field(default_factory=Counter)


_Block = Block
CellKey = tuple[str, str, Month]
"""poll key, cell, month"""
_Key = CellKey


def _blocks(responses: Sequence[Response], dimension: str | None) -> dict[_Key, _Block]:
    blocks: dict[_Key, _Block] = defaultdict(_Block)
    for response in responses:
        for cell in response.cells(dimension):
            block = blocks[(response.poll.key, cell, response.month)]
            block.n += 1
            block.counts.update(set(response.chosen))
    return blocks


def _safe_remainder(remainder: int, withheld: int, k: int) -> bool:
    """A remainder of withheld counts gives nothing away when it is 0, or at least k without pinning each of
    `withheld` counts (each below k) at exactly k - 1."""
    return remainder == 0 or (remainder >= k and remainder != withheld * (k - 1))


def publish_block(
    n: int,
    counts: Mapping[str, int],
    options: Sequence[str],
    multi: bool,
    k: int,
    groups: Sequence[frozenset[str]] = (),
) -> dict[str, int]:
    """The option counts of one month-cell (n >= k respondents) that may be shown, each at least k.

    For a single-choice poll the withheld counts are complemented (rule 2 of the module docstring) until their
    remainder is safe; when no shown option is left to withhold, raises _Dropped (the month-cell is dropped).
    Each option group (rule 6) is complemented the same way, against the group's total.
    """
    shown = {o: counts.get(o, 0) for o in options if counts.get(o, 0) >= k}
    if multi:
        return shown
    if any(0 < sum(counts.get(o, 0) for o in group) < k for group in groups):
        raise _Dropped  # rule 6: the respondents less that other figure would tell the small group
    while True:
        withheld = len(options) - len(shown)
        remainder = n - sum(shown.values())
        if withheld and not _safe_remainder(remainder, withheld, k):
            if not shown:
                raise _Dropped
            smallest = min(shown, key=lambda o: (shown[o], options.index(o)))
            del shown[smallest]
            continue
        unsafe = next((g for g in groups if not _group_is_safe(g, options, counts, shown, k)), None)
        if unsafe is None:
            return shown
        in_group = [o for o in options if o in unsafe and o in shown]
        del shown[min(in_group, key=lambda o: (shown[o], options.index(o)))]


def _group_is_safe(
    group: frozenset[str], options: Sequence[str], counts: Mapping[str, int], shown: Mapping[str, int], k: int
) -> bool:
    """The group's withheld counts add up to 0 or a safe remainder; with none of it shown, what is withheld is
    the group's total itself, which tells nothing the other figure does not."""
    hidden = [o for o in options if o in group and o not in shown]
    if len(hidden) == len([o for o in options if o in group]):
        return True
    return not hidden or _safe_remainder(sum(counts.get(o, 0) for o in hidden), len(hidden), k)


class _Dropped(Exception):
    pass


def month_cell(block: _Block, poll: Poll, k: int) -> dict[str, int] | None:
    """The published atoms of a month-cell, or None when the month-cell is dropped altogether."""
    if block.n < k:
        return None
    try:
        return publish_block(block.n, block.counts, [o for o, _ in poll.options], poll.multi, k, poll.groups)
    except _Dropped:
        return None


def _rest_is_safe(
    block: _Block, shown: Mapping[str, int], parts: Iterable[tuple[_Block, Mapping[str, int]]], poll: Poll, k: int
) -> bool:
    """Rule 4: what published month-cells leave of an "all" month-cell gives nothing away: the respondents, each
    count shown in "all", and for single choice the remainder of rule 2 both of the rest and of "all" less the
    counts the cells show of options "all" withholds."""
    parts = list(parts)
    rest_n = block.n - sum(b.n for b, _ in parts)
    rest = {o: c - sum(atoms.get(o, 0) for _, atoms in parts) for o, c in shown.items()}
    figures = [rest_n, *rest.values()]
    if not poll.multi:
        figures.append(rest_n - sum(rest.values()))
        remainder = block.n - sum(shown.values())
        figures.append(remainder - sum(c for _, atoms in parts for o, c in atoms.items() if o not in shown))
    return all(f == 0 or abs(f) >= k for f in figures)


_Published = dict[_Key, tuple[int, dict[str, int]]]


def _own_rule(blocks: Mapping[_Key, _Block], polls: Mapping[str, Poll], k: int) -> _Published:
    out: _Published = {}
    for key, block in blocks.items():
        atoms = month_cell(block, polls[key[0]], k)
        if atoms is not None:
            out[key] = (block.n, atoms)
    return out


_MonthValue = tuple[Month, str]
DefinedBy = Mapping[str, Mapping[str, Mapping[str, str]]]
"""breakdown dimension -> {poll key -> {option key -> breakdown value}}: the polls whose answers are the breakdown
(the flow's specialty question is the specialty breakdown), so a cell is shown only where its count is."""


def _shown_values(
    context: Mapping[_Key, _Block], polls: Mapping[str, Poll], defining: Mapping[str, Mapping[str, str]], k: int
) -> set[_MonthValue]:
    """(month, breakdown value) pairs whose count the defining polls show in their "all" month-cells."""
    subset = {key: block for key, block in context.items() if key[0] in defining}
    shown: set[_MonthValue] = set()
    for (poll, _, month), (_, atoms) in _own_rule(subset, polls, k).items():
        shown |= {(month, defining[poll][o]) for o in atoms if o in defining[poll]}
    return shown


def _published_cells(
    blocks: Mapping[_Key, _Block],
    overall_blocks: Mapping[_Key, _Block],
    polls: Mapping[str, Poll],
    dimension: str | None,
    k: int,
    context: Mapping[_Key, _Block],
    defined_by: DefinedBy | None = None,
) -> _Published:
    """The month-cells of one view that are published, with their shown counts (rules 1, 2, 4 and 5).

    `blocks` are the view's month-cells by `dimension`, `overall_blocks` its "all" month-cells, and `context` the
    "all" month-cells of the same months of every poll, for the polls that define the breakdown.
    """
    out = _own_rule(blocks, polls, k)
    defining = (defined_by or {}).get(dimension or "")
    if defining:
        # rule 5: a cell's respondents would tell a count of the defining poll: show it only where that poll does
        shown = _shown_values(context, polls, defining, k)
        maps_none = any(NONE in values.values() for values in defining.values())
        for key in [key for key in out if (key[1] != NONE or maps_none) and (key[2], key[1]) not in shown]:
            del out[key]
    if dimension is None:
        return out
    overall = _own_rule(overall_blocks, polls, k)
    parts: dict[tuple[str, Month], list[_Key]] = defaultdict(list)
    for key in out:
        parts[(key[0], key[2])].append(key)
    for (poll, month), keys in parts.items():
        whole = (poll, ALL, month)
        if whole not in overall:
            continue  # no "all" figure to subtract the cells from
        block, shown_all = overall_blocks[whole], overall[whole][1]
        # rule 4, each cell on its own: "all" minus one cell are the respondents outside it
        for key in list(keys):
            if not _rest_is_safe(block, shown_all, [(blocks[key], out[key][1])], polls[poll], k):
                keys.remove(key)
                del out[key]
        if dimension not in PARTITIONS:
            continue  # overlapping cells (licenses) add up to nothing
        # rule 4, the cells together: withhold the smallest until what they leave of "all" is safe; with no cell
        # left the rest is the "all" cell itself, which is safe by rules 1 and 2
        keys.sort(key=lambda key: (out[key][0], key[1]))
        while keys and not _rest_is_safe(
            block, shown_all, [(blocks[key], out[key][1]) for key in keys], polls[poll], k
        ):
            del out[keys.pop(0)]
    return out


def _latest_per_person(responses: Iterable[Response]) -> list[Response]:
    """One answer per respondent and poll: the latest month wins (an answer changed later replaces the earlier)."""
    latest: dict[tuple[str, int], Response] = {}
    for response in responses:
        key = (response.poll.key, response.respondent)
        if key not in latest or response.month >= latest[key].month:
            latest[key] = response
    return list(latest.values())


def _cell_order(cell: str) -> tuple[int, str]:
    return (1 if cell == NONE else 0, cell)


def _check(k: int, since: Month, until: Month, by: str | None) -> None:
    check_k(k)
    if since > until:
        raise ValueError(f"the period starts ({since}) after it ends ({until})")
    if by is not None and by not in DIMENSIONS:
        raise ValueError(f"unknown breakdown {by!r}; use one of {', '.join(DIMENSIONS)}")


def aggregate(
    responses: Iterable[Response],
    *,
    k: int,
    since: Month,
    until: Month,
    by: str | None = None,
    poll: str | None = None,
    defined_by: DefinedBy | None = None,
) -> Export:
    """Publishable rows for the whole months since..until (inclusive), optionally for one poll and by a breakdown.

    Counts one `Response` per respondent and poll into month-cells and publishes them with `aggregate_cells`.
    """
    _check(k, since, until, by)
    return aggregate_cells(
        count_responses(responses, by),
        k=k,
        since=since,
        until=until,
        by=by,
        poll=poll,
        defined_by=defined_by,
    )


@dataclass
class MonthCells:
    """Pre-counted month-cells (the database counts them with GROUP BY): one respondent per person and poll.

    `overall` holds the "all" month-cells, `by` the month-cells of the breakdown asked for (the same mapping as
    `overall` without one). Keys are (poll key, cell, month); a cell is a breakdown value or "none".
    """

    polls: Sequence[Poll]
    """Every poll that may have answers, in the export's order."""
    overall: Mapping[_Key, _Block]
    by: Mapping[_Key, _Block]

    def months(self) -> list[Month]:
        return sorted({key[2] for key in self.overall})

    def answered(self) -> list[str]:
        """Keys of the polls with answers, in order."""
        keys = {key[0] for key in self.overall}
        return [p.key for p in self.polls if p.key in keys]


def count_responses(responses: Iterable[Response], by: str | None = None) -> MonthCells:
    """The month-cells of answers given one by one (the latest per respondent and poll counts)."""
    everyone = _latest_per_person(responses)
    polls = list({r.poll.key: r.poll for r in everyone}.values())
    overall = _blocks(everyone, None)
    return MonthCells(polls, overall, overall if by is None else _blocks(everyone, by))


def aggregate_cells(
    cells: MonthCells,
    *,
    k: int,
    since: Month,
    until: Month,
    by: str | None = None,
    poll: str | None = None,
    defined_by: DefinedBy | None = None,
) -> Export:
    """Publishable rows for the whole months since..until (inclusive), optionally for one poll and by a breakdown.

    Rows come per poll (in the order of `cells.polls`), option (in the poll's order) and cell ("all", or
    `dimension:value` sorted with "none" last). A poll or cell with no published respondents has no rows.
    """
    _check(k, since, until, by)
    polls = {p.key: p for p in cells.polls}

    def within(blocks: Mapping[_Key, _Block], one: str | None) -> dict[_Key, _Block]:
        return {key: b for key, b in blocks.items() if since <= key[2] <= until and one in (None, key[0])}

    context = within(cells.overall, None)
    overall = within(cells.overall, poll)
    blocks = overall if by is None else within(cells.by, poll)
    totals: dict[tuple[str, str], tuple[int, Counter[str]]] = {}
    for (poll_key, cell, _), (n, atoms) in _published_cells(blocks, overall, polls, by, k, context, defined_by).items():
        respondents, counts = totals.get((poll_key, cell), (0, Counter()))
        counts.update(atoms)
        totals[(poll_key, cell)] = (respondents + n, counts)
    rows: list[Row] = []
    start, end = since.first_day, until.last_day
    for poll_key, spec in polls.items():
        ordered = sorted((c for p, c in totals if p == poll_key), key=_cell_order)
        for cell in ordered:
            respondents, counts = totals[(poll_key, cell)]
            label = ALL if by is None else f"{by}:{cell}"
            for option, option_label in spec.options:
                count = counts.get(option, 0)
                shown = count if count >= k else None
                share = round(count / respondents, 4) if shown is not None else None
                rows.append(
                    Row(poll_key, spec.question, option_label, label, shown, share, respondents, start, end, option)
                )
    return Export(tuple(rows), k, since, until, by)


def months_of(responses: Iterable[Response]) -> tuple[Month, Month] | None:
    """The first and last month with any answer, or None without answers."""
    months = [r.month for r in responses]
    return (min(months), max(months)) if months else None
