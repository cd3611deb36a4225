"""`medlegal flow diagram` and `medlegal flow check`: the decision flow drawn and validated from its data files."""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from flows.definition import DATA_DIR, FlowDefinition, build_definition

REGENERATE = "medlegal flow diagram"


def add_parser(sub: Any) -> None:
    """Register `flow` with its two actions on the main parser's subcommands."""
    flow = sub.add_parser("flow", help="the decision flow: `diagram` (Mermaid) or `check` (validate the data)")
    actions = flow.add_subparsers(dest="flow_command", required=True, metavar="ACTION")
    for name, text in (
        ("diagram", "print a Mermaid flowchart of the questions, skip rules and the four paths"),
        ("check", "check every question, option and path can be reached; one line per problem"),
    ):
        action = actions.add_parser(name, help=text, description=text)
        action.add_argument(
            "--data",
            type=Path,
            default=DATA_DIR,
            metavar="DIR",
            help="folder with questions.toml and rules.toml (default: the flow shipped with medlegal)",
        )


def _load(folder: Path) -> FlowDefinition | list[str]:
    """The definition, or the problems that stop it loading (each one line)."""
    raw: dict[str, dict[str, Any]] = {}
    for name in ("questions.toml", "rules.toml"):
        try:
            with (folder / name).open("rb") as fh:
                raw[name] = tomllib.load(fh)
        except OSError as exc:
            return [f"cannot read {folder / name}: {exc.strerror or exc}"]
        except tomllib.TOMLDecodeError as exc:
            return [f"{folder / name} is not valid TOML: {exc}"]
    try:
        return build_definition(raw["questions.toml"], raw["rules.toml"])
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error["loc"])
            lines += [f"{where}: {part}" for part in str(error["msg"]).removeprefix("Value error, ").split("; ")]
        return lines
    except ValueError as exc:
        return [str(exc)]


def run(args: argparse.Namespace) -> int:
    from flows.diagram import mermaid
    from flows.flowcheck import check_flow

    loaded = _load(args.data)
    if isinstance(loaded, list):
        for line in loaded:
            print(f"medlegal: {line}", file=sys.stderr)
        return 1
    if args.flow_command == "diagram":
        sys.stdout.write(mermaid(loaded))
        return 0
    report = check_flow(loaded)
    if not report.ok:
        for line in report.problems:
            print(f"medlegal: {line}", file=sys.stderr)
        return 1
    print(report.summary())
    return 0
