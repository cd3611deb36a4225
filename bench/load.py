"""1,000 physicians completing the flow at once against one bot process, beside a bare PTB bot's throughput.

    python -m bench.load [--physicians 1000] [--pg-url postgresql+asyncpg://postgres@127.0.0.1:5432/postgres]

The fake Bot API runs in a child process (`bench.physicians`) and generates the physicians' updates: all start
with /start at once and each taps the next answer as soon as the reply to the previous one arrives. Printed per
bot: updates per second (all updates, /start included, from the first tap to the last reply), tap latency p50/p99
(a tap queued at the fake to its reply), the round trip p99 (update handed out to reply), CPU milliseconds per
update of the bot process (all its threads), of the fake's process, and of the rest of the machine (the database
and anything else running; from /proc/stat, so other load shows here), errors, and for medlegal
a check of the database afterwards: every physician's flow completed with all 14 answers and a recommendation.
Targets: >= 300 updates/s on 2 cores with PostgreSQL and >= 0.7x the bare bot's throughput, no error, no lost
answer.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from sqlalchemy import func, select

from bench.common import Run, backend_name, fresh_database, machine, per_update, pg_url_from_env, profiled, run_bot
from bench.physicians import PERSONA, FakeProcess, percentile
from db.engine import make_engine
from db.models import AnswerRow, FlowSession, RecommendationRow

THROUGHPUT_TARGET = 300.0
BARE_RATIO_TARGET = 0.7


async def lost_answers(url: str, first_id: int, physicians: int) -> list[str]:
    """Physicians whose stored flow is not complete with every answer and a recommendation (empty when none)."""
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            answers = (
                select(FlowSession.user_id, func.count(AnswerRow.id).label("n"))
                .join(AnswerRow, AnswerRow.session_id == FlowSession.id)
                .where(FlowSession.status == "completed")
                .where(FlowSession.user_id.between(first_id, first_id + physicians - 1))
                .group_by(FlowSession.user_id)
            )
            counts = {user: n for user, n in (await conn.execute(answers)).all()}
            recommended = select(FlowSession.user_id).join(
                RecommendationRow, RecommendationRow.session_id == FlowSession.id
            )
            with_rec = set(
                (
                    await conn.execute(recommended.where(FlowSession.user_id.between(first_id, first_id + physicians)))
                ).scalars()
            )
    finally:
        await engine.dispose()
    problems = []
    for user_id in range(first_id, first_id + physicians):
        if counts.get(user_id) != len(PERSONA) or user_id not in with_rec:
            problems.append(f"{user_id}: {counts.get(user_id, 0)} answers, recommendation {user_id in with_rec}")
    return problems


def _line(run: Run) -> tuple[float, str]:
    report = run.report
    rate = report["updates"] / report["elapsed"] if report["elapsed"] else 0.0
    taps, trips = report["tap_latencies"], report["round_trips"]
    errors = report["error_count"] + run.bot_errors + report["stuck_count"]
    text = (
        f"{run.name:<22} {report['updates']:>7} {report['elapsed']:8.1f} {rate:9.1f}   "
        f"{percentile(taps, 0.5) * 1e3:8.1f} {percentile(taps, 0.99) * 1e3:8.1f}   "
        f"{percentile(trips, 0.99) * 1e3:8.1f}   {per_update(run.cpu, run)} {per_update(run.fake_cpu, run)} "
        f"{per_update(run.machine_cpu - run.cpu - run.fake_cpu, run)}   {errors}"
    )
    if errors:
        text += f"\n    {report['errors'][:3]} {run.first_bot_error or ''} stuck: {report['stuck'][:3]}"
    return rate, text


async def run(physicians: int, pg_url: str | None, backends: list[str], profile: str | None = None) -> bool:
    print(f"machine: {machine()}")
    print(f"{physicians} physicians at once, {physicians * 17} updates per bot\n")
    within = 120.0 + physicians * 1.5
    first_id = 2_000_000
    ok = True
    lines: list[tuple[str, float, str]] = []
    checks: list[str] = []
    async with FakeProcess() as fake:
        bare = await run_bot(fake, "bare PTB", None, physicians=physicians, first_id=first_id,
                             concurrency=physicians, within=within)  # fmt: skip
        lines.append(("bare", *_line(bare)))
        for kind in backends:
            if kind == "postgres" and pg_url is None:
                checks.append("PostgreSQL skipped: pass --pg-url or set MEDLEGAL_BENCH_PG_URL")
                continue
            first_id += 100_000
            async with fresh_database(kind, pg_url) as url:
                async with profiled(profile, f"load-{kind}"):
                    result = await run_bot(fake, f"medlegal {backend_name(url)}", url, physicians=physicians,
                                           first_id=first_id, concurrency=physicians, within=within)  # fmt: skip
                lost = await lost_answers(url, first_id, physicians)
            rate, text = _line(result)
            lines.append((kind, rate, text))
            errors = result.report["error_count"] + result.bot_errors + result.report["stuck_count"]
            verdict = [f"database: {'every flow complete' if not lost else f'{len(lost)} incomplete, e.g. {lost[:3]}'}"]
            ok &= not lost and not errors
            ratio = rate / lines[0][1] if lines[0][1] else 0.0
            verdict.append(f"{ratio:.2f}x bare ({'met' if ratio >= BARE_RATIO_TARGET else 'MISSED'} >= 0.7x)")
            ok &= ratio >= BARE_RATIO_TARGET
            if kind == "postgres":
                met = rate >= THROUGHPUT_TARGET
                ok &= met
                verdict.append(f"{rate:.0f} updates/s ({'met' if met else 'MISSED'} >= 300/s)")
            checks.append(f"{result.name}: " + "; ".join(verdict))
    print(f"{'':<22} {'':>7} {'':>8} {'':>9}   {'':>8} {'':>8}   {'':>8}   {'CPU ms per update':^20}")
    print(f"{'bot':<22} {'updates':>7} {'seconds':>8} {'updates/s':>9}   {'tap p50':>8} {'tap p99':>8}   "
          f"{'rt p99':>8}   {'bot':>6} {'fake':>6} {'rest':>6}   errors (ms)")  # fmt: skip
    for _, _, text in lines:
        print(text)
    print()
    for check in checks:
        print(check)
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--physicians", type=int, default=1000)
    parser.add_argument("--pg-url", default=pg_url_from_env(), help="a PostgreSQL server (a fresh database is made)")
    parser.add_argument("--backends", default="postgres,sqlite", help="comma-separated: postgres, sqlite")
    parser.add_argument("--profile", metavar="PREFIX", help="write pyinstrument profiles of medlegal to PREFIX-*.txt")
    args = parser.parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    return 0 if asyncio.run(run(args.physicians, args.pg_url, backends, args.profile)) else 1


if __name__ == "__main__":
    sys.exit(main())
