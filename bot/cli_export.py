"""`medlegal export`: the anonymised aggregates as CSV, JSON, or a directory of PNG charts (one per poll)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from bot.settings import Settings
from flows.aggregate import DIMENSIONS


class ExportProblem(Exception):
    """A user error of `medlegal export`; one line."""


def add_parser(sub: Any) -> None:
    export = sub.add_parser(
        "export",
        help="anonymised aggregates of the flow's answers and the polls: csv, json or png charts",
        description="Export counts and shares per poll, option and breakdown over whole, finished months. Counts "
        "below MEDLEGAL_K_MIN are written <k (their share left empty); see the README's 'Anonymity rule'.",
    )
    export.add_argument("--format", required=True, choices=("csv", "json", "png"), help="the file format")
    export.add_argument(
        "--out",
        required=True,
        metavar="PATH",
        help="csv/json: the file (- for standard output); png: a directory that receives one <poll>.png per poll",
    )
    export.add_argument(
        "--poll",
        metavar="KEY",
        help="only this poll (flow.specialty, flow.path, source.link, progress.qme, a community poll key)",
    )
    export.add_argument("--since", metavar="YYYY-MM", help="first month (default: the first month with answers)")
    export.add_argument("--until", metavar="YYYY-MM", help="last month, inclusive (default: last month)")
    export.add_argument("--by", choices=DIMENSIONS, help="a breakdown: one row per cell of it")


async def _answers(settings: Settings, by: str | None) -> Any:
    from bot.export_cells import load_cells
    from db import migrate
    from db.engine import make_engine, make_session_factory

    engine = make_engine(settings.database_url)
    try:
        await migrate.upgrade(engine)
        async with make_session_factory(engine)() as session:
            return await load_cells(session, settings.zone, by)
    finally:
        await engine.dispose()


def _write(path: Path, content: bytes) -> None:
    try:
        path.write_bytes(content)
    except OSError as exc:
        raise ExportProblem(f"cannot write {path}: {exc.strerror or exc}") from None


def _directory(out: str) -> Path:
    if out == "-":
        raise ExportProblem("--format png writes one file per poll: give a directory as --out, not -")
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ExportProblem(f"{path} is a file; --format png needs a directory for --out")
    try:
        path.mkdir(exist_ok=True)
    except OSError as exc:
        raise ExportProblem(f"cannot create the directory {path}: {exc.strerror or exc}") from None
    return path


def run(settings: Settings, args: argparse.Namespace) -> None:
    import asyncio

    from bot.export_data import ExportError, Request, build_export, period_of
    from bot.export_files import charts, csv_bytes, json_bytes

    request = Request(since=args.since, until=args.until, poll=args.poll, by=args.by)
    try:
        period_of(request, settings.current_date())  # bad months are reported before anything is touched
    except ExportError as exc:
        raise ExportProblem(str(exc)) from None
    if args.format != "png" and args.out != "-" and Path(args.out).is_dir():
        raise ExportProblem(f"{args.out} is a directory; --format {args.format} writes one file")
    directory = _directory(args.out) if args.format == "png" else None
    answers = asyncio.run(_answers(settings, request.by))
    try:
        export = build_export(answers.cells, settings.k_min, settings.current_date(), request, answers.links)
    except ExportError as exc:
        raise ExportProblem(str(exc)) from None
    if directory is not None:
        files = charts(export)
        for name, content in files.items():
            _write(directory / name, content)
            print(directory / name)
        if not files:
            print(f"nothing to chart: no poll reached {export.k} respondents in the period", file=sys.stderr)
        return
    content = csv_bytes(export) if args.format == "csv" else json_bytes(export)
    if args.out == "-":
        sys.stdout.buffer.write(content)
        sys.stdout.flush()
    else:
        _write(Path(args.out), content)
    if not export.rows:
        print(f"no poll reached {export.k} respondents in the period: the export has no rows", file=sys.stderr)
