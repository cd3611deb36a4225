"""The anonymity rule of flows.aggregate: examples, then properties over random answers and random periods."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows.aggregate import ALL, PARTITIONS, Export, Month, Poll, Response, _Dropped, aggregate, publish_block

YESNO = Poll("q", "Do you?", (("yes", "Yes"), ("no", "No"), ("maybe", "Maybe")))
TYPES = Poll("t", "Which types?", (("wc", "WC"), ("pi", "PI"), ("ltd", "LTD")), multi=True)
JAN, FEB, MAR = Month(2026, 1), Month(2026, 2), Month(2026, 3)


def answers(poll: Poll, month: Month, start: int, **counts: int) -> list[Response]:
    out: list[Response] = []
    for option, count in counts.items():
        for _ in range(count):
            out.append(Response(start + len(out), poll, (option,), month))
    return out


def figures(export: Export, by: str | None = None) -> dict[tuple[str, str, str], int]:
    """(poll, breakdown, option) -> count with "<k" as 0, plus (poll, breakdown, "") -> respondents."""
    out: dict[tuple[str, str, str], int] = {}
    for row in export.rows:
        out[(row.poll, row.breakdown, row.option_key)] = row.count or 0
        out[(row.poll, row.breakdown, "")] = row.respondents
    return out


def small(value: int, k: int) -> bool:
    return 0 < abs(value) < k


# -- months ------------------------------------------------------------------------------------------------------
def test_month_parsing_and_bounds() -> None:
    assert Month.parse("2026-02") == FEB
    assert FEB.first_day == date(2026, 2, 1) and FEB.last_day == date(2026, 2, 28)
    assert Month(2026, 12).next() == Month(2027, 1) and Month(2027, 1).previous() == Month(2026, 12)
    assert str(Month(2026, 3)) == "2026-03"
    for bad in ("2026-13", "2026-1", "26-01", "2026-00", "2026/01", "x"):
        with pytest.raises(ValueError, match="YYYY-MM"):
            Month.parse(bad)


# -- examples ----------------------------------------------------------------------------------------------------
def test_counts_shares_and_suppression_of_a_small_option() -> None:
    data = answers(YESNO, JAN, 0, yes=12, no=8, maybe=0)
    export = aggregate(data, k=5, since=JAN, until=JAN)
    by_option = {r.option_key: r for r in export.rows}
    assert by_option["yes"].count == 12 and by_option["yes"].share == 0.6
    assert by_option["no"].count == 8 and by_option["no"].share == 0.4
    assert by_option["maybe"].count is None and by_option["maybe"].share is None
    assert {r.respondents for r in export.rows} == {20}
    assert {(r.period_start, r.period_end) for r in export.rows} == {(date(2026, 1, 1), date(2026, 1, 31))}
    assert {r.breakdown for r in export.rows} == {ALL}


def test_a_single_small_option_is_complemented_so_respondents_minus_the_rest_reveals_nothing() -> None:
    data = answers(YESNO, JAN, 0, yes=12, no=8, maybe=2)
    by_option = {r.option_key: r.count for r in aggregate(data, k=5, since=JAN, until=JAN).rows}
    # 22 - 12 - 8 would give maybe = 2: "no" (the smaller shown count) is withheld as well
    assert by_option == {"yes": 12, "no": None, "maybe": None}


def test_withheld_counts_are_never_pinned_at_k_minus_one() -> None:
    assert publish_block(14, {"yes": 6, "no": 4, "maybe": 4}, ["yes", "no", "maybe"], False, 5) == {}
    assert publish_block(14, {"yes": 7, "no": 4, "maybe": 3}, ["yes", "no", "maybe"], False, 5) == {"yes": 7}


def test_a_poll_with_fewer_than_k_respondents_is_withheld_entirely() -> None:
    data = answers(YESNO, JAN, 0, yes=4)
    assert aggregate(data, k=5, since=JAN, until=JAN).rows == ()
    assert aggregate(data, k=3, since=JAN, until=JAN).rows != ()


def test_k_is_never_below_three() -> None:
    with pytest.raises(ValueError, match="at least 3"):
        aggregate([], k=2, since=JAN, until=JAN)


def test_each_month_must_be_publishable_on_its_own() -> None:
    """Three months of 3 answers each: 9 in the quarter, but no month could be published, so none is."""
    data = [*answers(YESNO, JAN, 0, yes=3), *answers(YESNO, FEB, 10, yes=3), *answers(YESNO, MAR, 20, yes=3)]
    assert aggregate(data, k=5, since=JAN, until=MAR).rows == ()
    more = [*data, *answers(YESNO, FEB, 30, yes=5)]
    quarter = {r.option_key: r.count for r in aggregate(more, k=5, since=JAN, until=MAR).rows}
    assert quarter["yes"] == 8  # February alone (3 + 5); January and March stay out of every figure


def test_multi_choice_counts_each_option_without_complement() -> None:
    data = [Response(i, TYPES, ("wc", "pi") if i < 6 else ("wc",), JAN) for i in range(9)]
    rows = {r.option_key: r for r in aggregate(data, k=5, since=JAN, until=JAN).rows}
    assert rows["wc"].count == 9 and rows["pi"].count == 6 and rows["ltd"].count is None
    assert rows["wc"].share == 1.0


def test_breakdown_cells_and_the_overall_row_that_would_give_a_small_cell_away() -> None:
    ortho = [Response(i, YESNO, ("yes",), JAN, {"specialty": ("ortho",)}) for i in range(10)]
    pmr = [Response(100 + i, YESNO, ("yes",), JAN, {"specialty": ("pmr",)}) for i in range(2)]
    overall = aggregate([*ortho, *pmr], k=5, since=JAN, until=JAN)
    assert {r.option_key: r.count for r in overall.rows}["yes"] == 12
    # 12 overall minus the 10 of ortho would show the 2 PM&R physicians: the ortho month-cell is withheld too
    assert aggregate([*ortho, *pmr], k=5, since=JAN, until=JAN, by="specialty").rows == ()
    pmr_no = [Response(100 + i, YESNO, ("no",), JAN, {"specialty": ("pmr",)}) for i in range(2)]
    psych = [Response(200 + i, YESNO, ("no",), JAN, {"specialty": ("psych",)}) for i in range(6)]
    by = aggregate([*ortho, *pmr_no, *psych], k=5, since=JAN, until=JAN, by="specialty")
    # the smallest published cell (psych, 6) is withheld too: 18 - 10 leaves 8 "no" (PM&R and psychiatry)
    assert {r.breakdown for r in by.rows} == {"specialty:ortho"}


def test_respondents_without_a_value_fall_in_the_none_cell_last() -> None:
    data = [Response(i, YESNO, ("yes",), JAN, {"source": ("club",)} if i < 5 else {}) for i in range(10)]
    cells = list(dict.fromkeys(r.breakdown for r in aggregate(data, k=5, since=JAN, until=JAN, by="source").rows))
    assert cells == ["source:club", "source:none"]


def test_license_cells_overlap() -> None:
    data = [Response(i, YESNO, ("yes",), JAN, {"license": ("CA", "NY")}) for i in range(6)]
    rows = aggregate(data, k=5, since=JAN, until=JAN, by="license").rows
    assert {(r.breakdown, r.respondents) for r in rows} == {("license:CA", 6), ("license:NY", 6)}


def test_a_respondent_counts_once_per_poll_in_the_month_of_the_latest_answer() -> None:
    data = [*answers(YESNO, JAN, 0, yes=5), *answers(YESNO, FEB, 0, no=5)]
    assert aggregate(data, k=5, since=JAN, until=JAN).rows == ()
    feb = {r.option_key: r.count for r in aggregate(data, k=5, since=JAN, until=FEB).rows}
    assert feb == {"yes": None, "no": 5, "maybe": None}


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="starts"):
        aggregate([], k=5, since=FEB, until=JAN)
    with pytest.raises(ValueError, match="breakdown"):
        aggregate([], k=5, since=JAN, until=JAN, by="age")
    with pytest.raises(ValueError, match="one specialty"):
        Response(1, YESNO, ("yes",), JAN, {"specialty": ("ortho", "pmr")})


# -- properties --------------------------------------------------------------------------------------------------
MONTHS = [Month(2026, m) for m in range(1, 7)]
SPECIALTIES = ["ortho", "pmr", "psych"]


SPEC = Poll("spec", "Specialty?", tuple((s, s.title()) for s in SPECIALTIES))
DEFINED = {"specialty": {SPEC.key: {s: s for s in SPECIALTIES}}}
"""The specialty breakdown is the answer to SPEC, as the flow's specialty question is in the bot."""


@st.composite
def responses(draw: st.DrawFn) -> list[Response]:
    out: list[Response] = []
    people = draw(st.integers(min_value=0, max_value=70))
    for person in range(people):
        specialty = draw(st.sampled_from([*SPECIALTIES, None]))
        source = draw(st.sampled_from(["club", "conf", None]))
        licenses = draw(st.lists(st.sampled_from(["CA", "NY", "TX"]), max_size=2, unique=True))
        breakdown = {
            "specialty": (specialty,) if specialty else (),
            "source": (source,) if source else (),
            "license": tuple(licenses),
        }
        month = draw(st.sampled_from(MONTHS[:4]))
        if specialty:
            out.append(Response(person, SPEC, (specialty,), month, breakdown))
        for poll in (YESNO, TYPES):
            if not draw(st.booleans()) and poll is TYPES:
                continue
            keys = [o for o, _ in poll.options]
            if poll.multi:
                chosen = tuple(draw(st.lists(st.sampled_from(keys), max_size=3, unique=True)))
            else:
                chosen = (draw(st.sampled_from(keys)),)
            out.append(Response(person, poll, chosen, month, breakdown))
    return out


def agg(data: list[Response], k: int, since: Month, until: Month, by: str | None = None) -> Export:
    return aggregate(data, k=k, since=since, until=until, by=by, defined_by=DEFINED)


PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BYS: Sequence[str | None] = [None, "specialty", "license", "source"]


@PROPERTY
@given(responses(), st.sampled_from([3, 5]), st.sampled_from(BYS))
def test_no_figure_below_k_and_totals_consistent(data: list[Response], k: int, by: str | None) -> None:
    export = agg(data, k, MONTHS[0], MONTHS[-1], by)
    for row in export.rows:
        assert row.respondents >= k
        assert (row.count is None) == (row.share is None)
        if row.count is not None:
            assert k <= row.count <= row.respondents
            assert row.share == round(row.count / row.respondents, 4)
    groups: dict[tuple[str, str], list[int | None]] = {}
    for row in export.rows:
        groups.setdefault((row.poll, row.breakdown), []).append(row.count)
    for (poll, breakdown), counts in groups.items():
        respondents = next(r.respondents for r in export.rows if (r.poll, r.breakdown) == (poll, breakdown))
        shown = sum(c for c in counts if c is not None)
        if poll == YESNO.key:
            # single choice: respondents minus the shown counts is what the withheld options add up to
            assert not small(respondents - shown, k), (poll, breakdown, respondents, counts)


@PROPERTY
@given(responses(), st.sampled_from([3, 5]), st.sampled_from(BYS))
def test_a_single_month_never_pins_withheld_counts(data: list[Response], k: int, by: str | None) -> None:
    for month in MONTHS[:4]:
        export = agg(data, k, month, month, by)
        for breakdown in {r.breakdown for r in export.rows_of(YESNO.key)}:
            rows = [r for r in export.rows_of(YESNO.key) if r.breakdown == breakdown]
            withheld = [r for r in rows if r.count is None]
            remainder = rows[0].respondents - sum(r.count or 0 for r in rows)
            assert remainder == 0 or (remainder >= k and remainder != len(withheld) * (k - 1))


@PROPERTY
@given(
    responses(),
    st.sampled_from([3, 5]),
    st.sampled_from(BYS),
    st.tuples(st.integers(0, 5), st.integers(0, 5), st.integers(0, 5), st.integers(0, 5)),
)
def test_two_periods_differ_by_nothing_small(
    data: list[Response], k: int, by: str | None, bounds: tuple[int, int, int, int]
) -> None:
    """Every figure over a period is the sum of the same figure over its single months, so two periods differ by
    a sum of published single-month figures; nested periods differ by 0 or at least k."""
    a0, a1, b0, b1 = sorted(bounds[:2]) + sorted(bounds[2:])
    first = figures(agg(data, k, MONTHS[a0], MONTHS[a1], by))
    second = figures(agg(data, k, MONTHS[b0], MONTHS[b1], by))
    singles = [figures(agg(data, k, m, m, by)) for m in MONTHS]
    for (lo, hi), period in (((a0, a1), first), ((b0, b1), second)):
        keys = set(period) | {key for single in singles[lo : hi + 1] for key in single}
        for key in keys:
            assert period.get(key, 0) == sum(single.get(key, 0) for single in singles[lo : hi + 1]), key
    if (a0 <= b0 and b1 <= a1) or (b0 <= a0 and a1 <= b1):
        for key in set(first) | set(second):
            assert not small(first.get(key, 0) - second.get(key, 0), k), key


@PROPERTY
@given(responses(), st.sampled_from([3, 5]), st.sampled_from(["specialty", "license", "source"]))
def test_the_overall_row_minus_breakdown_cells_reveals_no_small_group(data: list[Response], k: int, by: str) -> None:
    """Single months (every period is a sum of them): "all" minus one cell, and for specialty and source "all"
    minus all cells, leave 0 or at least k of the respondents, of each shown count, and of the remainders."""
    for month in MONTHS[:4]:
        overall = agg(data, k, month, month)
        cells = agg(data, k, month, month, by)
        for poll in overall.polls():
            everyone = overall.rows_of(poll)
            n = everyone[0].respondents
            withheld = {r.option_key for r in everyone if r.count is None}
            remainder = n - sum(r.count or 0 for r in everyone)
            groups = [[r for r in cells.rows_of(poll) if r.breakdown == b] for b in {r.breakdown for r in cells.rows}]
            groups = [g for g in groups if g]
            sets = [[g] for g in groups] + ([groups] if by in PARTITIONS else [])
            for parts in sets:
                rows = [r for g in parts for r in g]
                assert not small(n - sum(g[0].respondents for g in parts), k)
                for row in everyone:
                    if row.count is not None:
                        same = [r.count or 0 for r in rows if r.option_key == row.option_key]
                        assert not small(row.count - sum(same), k)
                if poll != TYPES.key:
                    assert not small(remainder - sum(r.count or 0 for r in rows if r.option_key in withheld), k)


@PROPERTY
@given(responses(), st.sampled_from([3, 5]))
def test_a_specialty_cell_shows_only_where_the_specialty_poll_shows_its_count(data: list[Response], k: int) -> None:
    for month in MONTHS[:4]:
        shown = {r.option_key for r in agg(data, k, month, month).rows_of(SPEC.key) if r.count is not None}
        cells = {r.breakdown.split(":")[1] for r in agg(data, k, month, month, "specialty").rows}
        assert cells - {"none"} <= shown


# -- option groups (rule 6) and a defining poll that maps "none" (rule 5) ------------------------------------------
def test_a_group_whose_total_is_published_elsewhere_is_complemented_too() -> None:
    options = ["a", "b", "c", "x", "y"]
    counts = {"a": 10, "b": 2, "c": 0, "x": 14, "y": 3}
    # alone, rule 2 is content: the withheld b, c and y add up to 5
    assert publish_block(29, counts, options, False, 5) == {"a": 10, "x": 14}
    # but a, b and c add up to a figure published elsewhere (12): 12 - 10 would tell b, so a is withheld too
    group = (frozenset({"a", "b", "c"}),)
    assert publish_block(29, counts, options, False, 5, group) == {"x": 14}
    # a group with nothing shown is withheld as a whole: its total is the other figure itself
    counts = {"a": 3, "b": 2, "c": 0, "x": 21, "y": 3}
    assert publish_block(29, counts, options, False, 5, group) == {"x": 21}
    # a group total below k: the respondents minus the other figure would tell it, so the month-cell is dropped
    with pytest.raises(_Dropped):
        publish_block(29, {"a": 2, "b": 2, "c": 0, "x": 22, "y": 3}, options, False, 5, group)


@PROPERTY
@given(
    st.lists(st.integers(0, 12), min_size=5, max_size=5),
    st.lists(st.sampled_from(range(5)), min_size=1, max_size=4, unique=True),
    st.sampled_from([3, 5]),
)
def test_no_group_total_minus_its_shown_counts_is_small(counts: list[int], members: list[int], k: int) -> None:
    options = [f"o{i}" for i in range(5)]
    group = frozenset(options[i] for i in members)
    n = sum(counts)
    if n < k:
        return
    try:
        shown = publish_block(n, dict(zip(options, counts, strict=True)), options, False, k, (group,))
    except _Dropped:  # the month-cell is dropped: nothing published
        return
    assert all(count >= k for count in shown.values())
    assert not small(sum(c for o, c in zip(options, counts, strict=True) if o in group), k)
    for part in (group, frozenset(options)):
        hidden = [o for o in options if o in part and o not in shown]
        rest = sum(c for o, c in zip(options, counts, strict=True) if o in hidden)
        if (hidden and len(hidden) < len([o for o in options if o in part])) or part == frozenset(options):
            assert rest == 0 or (rest >= k and rest != len(hidden) * (k - 1)), (part, shown)


def test_a_defining_poll_that_maps_none_gates_the_none_cell_as_well() -> None:
    link = Poll("link", "Link?", (("club", "Club"), ("~none", "No link")))
    defined = {"source": {"link": {"club": "club", "~none": "none"}}}
    data: list[Response] = []
    for person in range(8):
        source = ("club",) if person < 5 else ()
        data.append(Response(person, link, (source[0] if source else "~none",), JAN))
        data.append(Response(person, YESNO, ("yes",), JAN, {"source": source}))
    # 3 without a link: the link poll shows them (k=3), so the none cell may show too
    cells = {r.breakdown for r in aggregate(data, k=3, since=JAN, until=JAN, by="source", defined_by=defined).rows}
    assert cells == {"source:club", "source:none"}
    # k=4: the link poll withholds the 3 (and, to protect them, the club's 5): no source cell at all
    rows = aggregate(data, k=4, since=JAN, until=JAN, by="source", defined_by=defined).rows
    assert {r.breakdown for r in rows} == set()
