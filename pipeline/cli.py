"""The only entry point: parse arguments, load config, call one function, map errors to exits.

Exit codes: 0 ok; 1 a gate or check failed (data contract, policy, drift); 2 usage, config or
input error. Only this module prints, exits or configures logging.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from pipeline.config import load_params
from pipeline.errors import PipelineError

log = logging.getLogger("pipeline")

# The DVC stages, in DAG order. One name per stage everywhere: module, subcommand, dvc.yaml.
STAGES = ("ingest", "validate", "features", "train", "evaluate")

Handler = Callable[[argparse.Namespace], int]


def _run_stage(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    module = importlib.import_module(f"pipeline.{args.command}")
    module.run(params)
    return 0


def _emit(text: str, output: str | None) -> None:
    """Print a report, or write it atomically to --output."""
    if output:
        from pipeline.io import write_text

        write_text(output, text)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


# --------------------------------------------------------------------------- commands
# Each command: a `_add_<name>(subparsers)` that declares arguments and sets `handler`.


def _add_stages(sub: Any) -> None:
    for stage in STAGES:
        p = sub.add_parser(stage, help=f"run the {stage} stage (what `dvc repro` calls)")
        p.set_defaults(handler=_run_stage)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ml-pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in ADDERS:
        add(sub)
    return parser


# Helpers append their `_add_<command>` here; order is the order of `--help`.
ADDERS: list[Callable[[Any], None]] = [
    _add_stages,
]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    handler: Handler = args.handler
    try:
        return handler(args)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except (KeyboardInterrupt, BrokenPipeError):
        return 130

