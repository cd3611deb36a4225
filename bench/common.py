"""What bench.flow and bench.load share: fresh databases, the machine description and running one bot."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import platform
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.bots import Probe, Running, bare_app, medlegal_app
from bench.physicians import FakeProcess
from bot.app import tune_gc
from db import migrate
from db.engine import make_engine

PG_ENV = "MEDLEGAL_BENCH_PG_URL"
"""A PostgreSQL server URL (any database on it); each run creates a fresh database there and drops it after."""


def machine() -> str:
    """`nproc` and the CPU model, for the figures' record."""
    model = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {model}, Python {platform.python_version()}"


def backend_name(url: str) -> str:
    return "PostgreSQL" if url.startswith("postgresql") else "SQLite"


@contextlib.asynccontextmanager
async def fresh_database(kind: str, pg_url: str | None) -> AsyncIterator[str]:
    """A migrated, empty database: a temporary SQLite file, or a new database on the PostgreSQL server."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
            await _migrate(url)
            yield url
        return
    assert pg_url is not None
    import asyncpg

    admin = pg_url.replace("postgresql+asyncpg://", "postgresql://")
    name = f"medlegal_bench_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = f"{pg_url.rpartition('/')[0]}/{name}"
    try:
        await _migrate(url)
        yield url
    finally:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


async def _migrate(url: str) -> None:
    engine = make_engine(url)
    await migrate.upgrade(engine)
    await engine.dispose()


@dataclass
class Run:
    """One bot's figures from one batch of physicians."""

    name: str
    report: dict[str, Any]
    in_process: list[float]
    bot_errors: int
    first_bot_error: str | None
    cpu: float = 0.0
    """CPU seconds of this process (the bot) during the measured run, all threads."""
    fake_cpu: float = 0.0
    """CPU seconds of the fake Bot API's process (the simulated physicians) during the run."""
    machine_cpu: float = 0.0
    """CPU seconds of the whole machine during the run (every core, every process: the bot, the fake, the database
    and anything else), from /proc/stat; 0.0 where there is none."""


def per_update(seconds: float, run: Run) -> str:
    """CPU milliseconds per update, as a table cell."""
    updates = run.report["updates"]
    return f"{seconds / updates * 1e3 if updates else 0.0:6.2f}"


def merge_runs(runs: list[Run]) -> Run:
    """One bot's rounds as one run: the samples pooled, the counts and CPU summed."""
    first = runs[0]
    report: dict[str, Any] = {
        **first.report,
        "round_trips": [t for r in runs for t in r.report["round_trips"]],
        "tap_latencies": [t for r in runs for t in r.report["tap_latencies"]],
        "errors": [e for r in runs for e in r.report["errors"]][:20],
        "stuck": [s for r in runs for s in r.report["stuck"]][:10],
    }
    for key in ("completed", "stuck_count", "updates", "elapsed", "error_count"):
        report[key] = sum(r.report[key] for r in runs)
    return Run(
        first.name,
        report,
        [t for r in runs for t in r.in_process],
        sum(r.bot_errors for r in runs),
        next((r.first_bot_error for r in runs if r.first_bot_error), None),
        sum(r.cpu for r in runs),
        sum(r.fake_cpu for r in runs),
        sum(r.machine_cpu for r in runs),
    )


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _machine_busy() -> float:
    """CPU seconds every core has spent busy since boot (0.0 without /proc/stat)."""
    with contextlib.suppress(OSError):
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
        return (user + nice + system + irq + softirq + steal) / _TICK
    return 0.0


def _process_cpu(pid: int | None) -> float:
    """CPU seconds of one process (user and system, 0.0 when it cannot be read)."""
    with contextlib.suppress(OSError, IndexError, ValueError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK
    return 0.0


async def run_bot(
    fake: FakeProcess,
    name: str,
    database_url: str | None,
    *,
    physicians: int,
    first_id: int,
    concurrency: int,
    within: float,
    warmup: int = 2,
) -> Run:
    """Start the bot (medlegal on `database_url`, or the bare bot for None), warm it up, run the physicians."""
    probe = Probe()
    app = bare_app(fake.address) if database_url is None else medlegal_app(fake.address, database_url)
    probe.attach(app)
    tuned = contextlib.nullcontext() if database_url is None else gc_tuned()
    async with Running(app) as running:
        with tuned:
            if warmup:
                await fake.run(warmup, first_id + physicians, warmup, within)  # connections, caches, first imports
                probe.reset()
            child = fake.proc.pid if fake.proc is not None else None
            cpu, fake_cpu, machine_cpu = time.process_time(), _process_cpu(child), _machine_busy()
            report = await fake.run(physicians, first_id, concurrency, within)
            cpu = time.process_time() - cpu
            fake_cpu, machine_cpu = _process_cpu(child) - fake_cpu, _machine_busy() - machine_cpu
    errors = running.errors
    return Run(name, report, probe.step_times(), errors.count, errors.first, cpu, fake_cpu, machine_cpu)


@contextlib.contextmanager
def gc_tuned() -> Iterator[None]:
    """The garbage collector as `medlegal run` sets it once initialized (`bot.app.tune_gc`), for one medlegal run;
    the bare bot keeps Python's defaults, and the process gets them back afterwards."""
    thresholds = gc.get_threshold()
    tune_gc()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


@contextlib.asynccontextmanager
async def profiled(prefix: str | None, name: str) -> AsyncIterator[None]:
    """Profile the block with pyinstrument (`pip install pyinstrument`, in the bench extra) into PREFIX-name.txt.

    Only CPU in this process shows (idle time waiting for the fake or the database is left out), so the top
    entries are what a flow step costs the bot itself.
    """
    if prefix is None:
        yield
        return
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.001, async_mode="disabled")
    profiler.start()
    try:
        yield
    finally:
        profiler.stop()
        path = Path(f"{prefix}-{name.lower()}.txt")
        text = profiler.output_text(unicode=False, color=False, show_all=False)
        await asyncio.to_thread(path.write_text, text)
        print(f"profile written to {path}")


def pg_url_from_env() -> str | None:
    return os.environ.get(PG_ENV) or None
