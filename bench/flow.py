"""The cost of one flow step (a button update in, the answer persisted, the reply out), beside a bare PTB bot.

    python -m bench.flow [--physicians 200] [--rounds 4] [--pg-url postgresql+asyncpg://postgres@127.0.0.1:5432/postgres]

The fake Bot API runs in a child process (`bench.physicians`) and its physicians tap through the 14-question
persona one at a time (no concurrency: this is the latency of a step, `bench.load` is the throughput). The bots
take turns against the same fake, a share of the physicians each round: the bare PTB bot, then medlegal on SQLite,
then on PostgreSQL (when a server URL is given with --pg-url or MEDLEGAL_BENCH_PG_URL; a fresh database is created
there and dropped after).

Two measures per step, as p50/p95/p99 in milliseconds:
* in-process: from PTB handing the update over to the reply request being issued, Bot API waits excluded;
* round trip, seen by the fake: from the getUpdates response handing the update out to the reply arriving.
Targets: in-process p99 <= 5 ms on PostgreSQL; round trip p50 and p99 <= 1.3x the bare bot's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

from bench.common import (
    Run,
    backend_name,
    fresh_database,
    machine,
    merge_runs,
    per_update,
    pg_url_from_env,
    profiled,
    run_bot,
)
from bench.physicians import FakeProcess, percentile

ROUNDS = 4
"""The bots take turns, a share of the physicians each round, so a drift in the machine's speed during the run
(seen here: a tenth, sometimes more) falls on every bot alike instead of on whichever ran last."""
IN_PROCESS_P99_TARGET = 0.005
ROUND_TRIP_RATIO_TARGET = 1.3


def _ms(values: list[float]) -> str:
    return " ".join(f"{percentile(values, q) * 1e3:7.2f}" for q in (0.5, 0.95, 0.99))


def print_table(runs: list[Run]) -> None:
    print(
        f"{'bot':<22} {'steps':>6}   {'in-process ms p50/p95/p99':>25}   {'round trip ms p50/p95/p99':>25}"
        f"  {'CPU ms/update':>13}  errors"
    )
    for run in runs:
        trips = run.report["round_trips"]
        errors = run.report["error_count"] + run.bot_errors + run.report["stuck_count"]
        cpu = per_update(run.cpu, run)
        print(f"{run.name:<22} {len(trips):>6}   {_ms(run.in_process)}   {_ms(trips)}  {cpu:>13}  {errors}")
        if errors:
            print(f"    {run.report['errors'][:3]} {run.first_bot_error or ''} stuck: {run.report['stuck'][:3]}")


def print_targets(runs: list[Run]) -> bool:
    bare = next((r for r in runs if r.name.startswith("bare")), None)
    ok = True
    for run in runs:
        if run.name.startswith("bare"):
            continue
        lines = []
        p99 = percentile(run.in_process, 0.99)
        if "PostgreSQL" in run.name:
            met = p99 <= IN_PROCESS_P99_TARGET
            ok &= met
            lines.append(f"in-process p99 {p99 * 1e3:.2f} ms (target <= 5 ms: {'met' if met else 'MISSED'})")
        if bare is not None:
            for q in (0.5, 0.99):
                mine, theirs = percentile(run.report["round_trips"], q), percentile(bare.report["round_trips"], q)
                ratio = mine / theirs if theirs else float("inf")
                met = ratio <= ROUND_TRIP_RATIO_TARGET
                ok &= met
                lines.append(f"round trip p{int(q * 100)} {ratio:.2f}x bare ({'met' if met else 'MISSED'})")
        print(f"{run.name}: " + "; ".join(lines))
    return ok


async def run(
    physicians: int, pg_url: str | None, backends: list[str], profile: str | None = None, rounds: int = ROUNDS
) -> bool:
    print(f"machine: {machine()}")
    if profile is not None:
        rounds = 1  # a profile shows where the time goes; one run per bot is enough for that
    print(f"{physicians} physicians one after another, {physicians * 16} button steps per bot, in {rounds} rounds\n")
    runs = await measure(physicians, pg_url, backends, profile, rounds)
    print_table(runs)
    print()
    return print_targets(runs)


async def measure(
    physicians: int, pg_url: str | None, backends: list[str], profile: str | None, rounds: int
) -> list[Run]:
    """Every bot's steps, its rounds pooled: the bare bot first, then medlegal on each backend."""
    async with FakeProcess() as fake, contextlib.AsyncExitStack() as databases:
        bots: list[tuple[str, str | None]] = [("bare PTB", None)]
        for kind in backends:
            if kind == "postgres" and pg_url is None:
                print("PostgreSQL skipped: pass --pg-url or set MEDLEGAL_BENCH_PG_URL\n")
                continue
            database = await databases.enter_async_context(fresh_database(kind, pg_url))
            bots.append((f"medlegal {backend_name(database)}", database))
        timeout = 30.0 + physicians * 5.0
        shares = [physicians // rounds + (1 if r < physicians % rounds else 0) for r in range(rounds)]
        runs: dict[str, list[Run]] = {name: [] for name, _ in bots}
        for r, share in enumerate(shares):
            for b, (name, url) in enumerate(bots):
                first_id = 1_000_000 + b * 100_000 + sum(shares[:r]) + r * 10  # the warm-up's two take the gap
                async with profiled(None if url is None else profile, "bare" if url is None else backend_name(url)):
                    runs[name].append(await run_bot(fake, name, url, physicians=share, first_id=first_id,
                                                    concurrency=1, within=timeout))  # fmt: skip
    return [merge_runs(each) for each in runs.values()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--physicians", type=int, default=200, help="physicians per bot, one after another")
    parser.add_argument("--pg-url", default=pg_url_from_env(), help="a PostgreSQL server (a fresh database is made)")
    parser.add_argument("--backends", default="sqlite,postgres", help="comma-separated: sqlite, postgres")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="turns the bots take, a share of physicians each")
    parser.add_argument("--profile", metavar="PREFIX", help="write pyinstrument profiles of medlegal to PREFIX-*.txt")
    args = parser.parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    ok = asyncio.run(run(args.physicians, args.pg_url, backends, args.profile, max(1, args.rounds)))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
