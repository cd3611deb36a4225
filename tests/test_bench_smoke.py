"""The benchmarks' machinery works (physicians driven by the fake in a child process, the probe, the database check);
no figure is asserted: the benchmarks measure, the suite only keeps them runnable."""

from __future__ import annotations

from bench.common import fresh_database, run_bot
from bench.flow import measure
from bench.load import lost_answers
from bench.physicians import TAPS, FakeProcess


async def test_one_physician_through_the_bare_bot_and_medlegal_is_measured_and_stored() -> None:
    async with FakeProcess() as fake, fresh_database("sqlite", None) as url:
        bare = await run_bot(fake, "bare", None, physicians=1, first_id=10, concurrency=1, within=60, warmup=0)
        real = await run_bot(fake, "medlegal", url, physicians=2, first_id=20, concurrency=2, within=60, warmup=0)
        assert await lost_answers(url, 20, 2) == []
        assert await lost_answers(url, 20, 3) != []  # a physician who never came is reported
    for run, physicians in ((bare, 1), (real, 2)):
        assert run.report["completed"] == physicians and run.report["error_count"] == 0 and run.bot_errors == 0
        assert len(run.report["round_trips"]) == len(run.in_process) == physicians * len(TAPS)
        assert run.report["updates"] == physicians * (1 + len(TAPS))


async def test_the_flow_benchmark_pools_the_bots_rounds() -> None:
    runs = await measure(5, None, ["sqlite"], None, rounds=2)  # three physicians in the first round, two after
    assert [run.name for run in runs] == ["bare PTB", "medlegal SQLite"]
    for run in runs:
        assert run.report["completed"] == 5 and run.report["error_count"] == 0 and run.bot_errors == 0
        assert len(run.report["round_trips"]) == len(run.in_process) == 5 * len(TAPS)
