"""The only entry point: parse arguments, load config, call one function, map errors to exits.

Exit codes: 0 ok; 1 a gate or check failed (data contract, policy, drift); 2 usage, config or
input error. Only this module prints, exits or configures logging.
"""

from __future__ import annotations

import argparse
import errno
import gc
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from pipeline.config import Params, load_params, outside_the_repository
from pipeline.errors import ConfigError, PipelineError, UsageError

log = logging.getLogger("pipeline")

# The DVC stages, in DAG order. One name per stage everywhere: module, subcommand, dvc.yaml.
STAGES = ("ingest", "validate", "features", "train", "evaluate", "benchmark")

Handler = Callable[[argparse.Namespace], int]


def import_stage(name: str, *, own_process: bool) -> ModuleType:
    """Import pipeline.<name>; in a process of its own, with the cyclic GC paused, then frozen.

    A stage process spends seconds importing scikit-learn, SciPy and pandas, which leave about
    300,000 GC-tracked objects that live until the process exits. Every full collection, during
    the imports and then during the stage's own work, walks all of them again for nothing.
    Pausing the GC for the import and then freezing what exists (gc.freeze: never scanned
    again) made evaluate, whose slices and fairness groups allocate many small objects, about
    1 s faster at 1M rows (benchmarks/README.md). Only in a process of its own: in a long-lived
    caller such as a test session, freezing would keep that caller's garbage forever.
    """
    if not own_process:
        return importlib.import_module(f"pipeline.{name}")
    gc.disable()
    try:
        module = importlib.import_module(f"pipeline.{name}")
        gc.freeze()
        return module
    finally:
        gc.enable()


def stage_params(params_file: str) -> Params:
    """params for the stages (and config-check): validated, and every path they read or write
    checked to really lie in the repository they run in (the working directory, symlinks
    followed), so a refused run has written nothing anywhere."""
    params = load_params(params_file)
    problems = outside_the_repository(params, Path.cwd(), params_file)
    if problems:
        raise ConfigError(problems)
    return params


def _run_stage(args: argparse.Namespace) -> int:
    params = stage_params(args.params)
    import_stage(args.command, own_process=args.own_process).run(params)
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


def _add_predict(sub: Any) -> None:
    p = sub.add_parser("predict", help="score a CSV/Parquet file of raw rows with the saved model")
    p.add_argument("--input", required=True, help="CSV or Parquet file: local path or http(s) URL")
    p.add_argument("--output", required=True, help="predictions file to write (.csv or .parquet)")
    p.add_argument("--model", default=None, help="model file (default: paths.model in params)")
    p.set_defaults(handler=_cmd_predict)


def _cmd_predict(args: argparse.Namespace) -> int:
    from pipeline.predict import run_predict

    params = load_params(args.params)
    scored = run_predict(params, args.input, args.output, args.model)
    log.info("wrote %d predictions to %s", len(scored), args.output)
    return 0


def _add_generate(sub: Any) -> None:
    p = sub.add_parser(
        "generate",
        help="write a (drifted) batch of synthetic applications, e.g. a production batch",
        description="Start from params.ingest.generator and apply these overrides.",
    )
    p.add_argument("--output", required=True, help="file to write (.csv or .parquet)")
    p.add_argument("--rows", type=int, default=None, help="rows to generate")
    p.add_argument("--seed", type=int, default=None, help="random seed (same seed, same rows)")
    p.add_argument("--start", default=None, help="first timestamp, ISO date YYYY-MM-DD")
    p.add_argument(
        "--covariate-shift",
        action="append",
        default=[],
        metavar="COL=SD",
        help="shift a numeric column's mean by SD standard deviations (repeatable)",
    )
    p.add_argument(
        "--category-shift",
        action="append",
        default=[],
        metavar="COL:CAT=W",
        help="give category CAT of COL probability weight W (repeatable)",
    )
    p.add_argument("--prior-shift", type=float, default=None, help="added to the log-odds")
    p.add_argument(
        "--concept-drift", type=float, default=None, help="0..1 blend toward another rule"
    )
    p.add_argument("--no-label", action="store_true", help="omit the label column (task.target)")
    p.set_defaults(handler=_cmd_generate)


def _cmd_generate(args: argparse.Namespace) -> int:
    from pipeline.ingest import batch, override
    from pipeline.io import write_table

    params = load_params(args.params)
    generator = override(
        params.ingest.generator,
        rows=args.rows,
        seed=args.seed,
        start=args.start,
        covariate_shift=args.covariate_shift,
        category_shift=args.category_shift,
        prior_shift=args.prior_shift,
        concept_drift=args.concept_drift,
    )
    frame = batch(generator, params.task, label=not args.no_label)
    write_table(args.output, frame)
    log.info("wrote %d rows to %s", len(frame), args.output)
    return 0


def _add_monitor(sub: Any) -> None:
    p = sub.add_parser(
        "monitor",
        help="check a production batch for drift and performance against the training reference",
        description="Exit 0: no breach; 1: breach (drift, performance or contract); 2: bad input.",
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("batch", nargs="?", help="CSV or Parquet batch: local path or http(s) URL")
    which.add_argument(
        "--latest", action="store_true", help="the newest file in paths.production (by name)"
    )
    p.add_argument("--format", choices=("md", "json"), default="md", help="report format")
    p.add_argument("--output", default=None, help="write the report here instead of stdout")
    p.add_argument("--json-output", default=None, help="also write the JSON report to this file")
    p.set_defaults(handler=_cmd_monitor)


def _cmd_monitor(args: argparse.Namespace) -> int:
    from pipeline.io import write_text
    from pipeline.monitor import render, run_monitor

    params = load_params(args.params)
    report = run_monitor(params, None if args.latest else args.batch)
    if args.json_output:
        write_text(args.json_output, render(report, "json"))
    _emit(render(report, args.format), args.output)
    return 1 if report["breach"] else 0


# --- promotion policy and model registry (pipeline/policy.py, pipeline/registry.py)


def _add_policy(sub: Any) -> None:
    p = sub.add_parser("policy", help="promotion policy commands")
    psub = p.add_subparsers(dest="policy_command", required=True, metavar="ACTION")
    c = psub.add_parser(
        "check",
        help="judge a candidate against a stage's policy and the stage's current holder",
        description="Exit 0: every rule passed; 1: a rule failed; 2: bad input or config.",
    )
    c.add_argument("--stage", required=True, help="registry stage (a key of the policy file)")
    c.add_argument(
        "--candidate",
        default="workspace",
        help="'workspace' (files in the working tree) or a git rev/tag (default: %(default)s)",
    )
    c.add_argument("--format", choices=("md", "json"), default="md", help="output format")
    c.add_argument("--output", default=None, help="write the verdict here instead of stdout")
    c.set_defaults(handler=_cmd_policy_check)


def _cmd_policy_check(args: argparse.Namespace) -> int:
    from pipeline.policy import check, render

    params = load_params(args.params)
    verdict = check(params, args.stage, args.candidate)
    _emit(render([verdict], args.format), args.output)
    return 0 if verdict.passed else 1


def _add_register(sub: Any) -> None:
    p = sub.add_parser(
        "register",
        help="tag a new model version (GTO <model>@vX.Y.Z) when dvc.lock pins a new model",
    )
    p.add_argument("--rev", default="HEAD", help="commit to register (default: %(default)s)")
    p.add_argument(
        "--bump", choices=("major", "minor", "patch"), default="minor", help="version part"
    )
    p.add_argument("--version", default=None, help="explicit version vX.Y.Z instead of a bump")
    p.add_argument("--push", action="store_true", help="push the new tag to origin")
    p.set_defaults(handler=_cmd_register)


def _cmd_register(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pipeline.registry import push_tags, register

    params = load_params(args.params)
    result = register(params, Path.cwd(), rev=args.rev, part=args.bump, version=args.version)
    if args.push and result.tag:
        push_tags(Path.cwd(), [result.tag])
    _emit(result.reason, None)
    return 0


def _add_registry_edit_options(p: argparse.ArgumentParser) -> None:
    """--branch/--open-pr/--base: how a registry.yaml edit becomes a pull request."""
    p.add_argument("--branch", default=None, help="create this branch and commit the edit on it")
    p.add_argument(
        "--open-pr",
        action="store_true",
        help="with --branch: push it to origin and open the pull request (needs gh)",
    )
    p.add_argument("--base", default="main", help="the PR's base branch (default: %(default)s)")


def _registry_edit(args: argparse.Namespace, make_edit: Callable[[Any, Any], Any]) -> int:
    """Check the options, make the edit (promote or rollback), report it, open the PR."""
    from pathlib import Path

    from pipeline.registry import open_pull_request

    if args.open_pr and not args.branch:
        raise UsageError("--open-pr needs --branch (the pull request's head branch)")
    edit = make_edit(load_params(args.params), Path.cwd())
    _emit(edit.description + (f" (committed on branch {edit.branch})" if edit.branch else ""), None)
    if args.open_pr:
        _emit(open_pull_request(Path.cwd(), edit, base=args.base), None)
    return 0


def _add_promote(sub: Any) -> None:
    p = sub.add_parser(
        "promote", help="point a stage (or its canary) at a version in registry.yaml"
    )
    p.add_argument("version", help="registered version, e.g. v1.2.0")
    p.add_argument("--to", dest="stage", required=True, help="stage, e.g. production")
    p.add_argument("--canary", type=int, default=None, help="serve the version to N%% only")
    _add_registry_edit_options(p)
    p.set_defaults(handler=_cmd_promote)


def _cmd_promote(args: argparse.Namespace) -> int:
    from pipeline.registry import promote

    return _registry_edit(
        args,
        lambda params, repo: promote(
            params, repo, args.version, args.stage, canary_percent=args.canary, branch=args.branch
        ),
    )


def _add_rollback(sub: Any) -> None:
    p = sub.add_parser(
        "rollback",
        help="abort a stage's canary, or point the stage at the version that held it before",
    )
    p.add_argument("stage", help="stage, e.g. production")
    _add_registry_edit_options(p)
    p.set_defaults(handler=_cmd_rollback)


def _cmd_rollback(args: argparse.Namespace) -> int:
    from pipeline.registry import rollback

    return _registry_edit(
        args, lambda params, repo: rollback(params, repo, args.stage, branch=args.branch)
    )


def _add_reconcile(sub: Any) -> None:
    p = sub.add_parser(
        "reconcile",
        help="create the GTO stage tags that make the registry match models/registry.yaml",
        description="Exit 0: in sync or tags created; 1: a policy refused; 2: bad input.",
    )
    p.add_argument("--dry-run", action="store_true", help="only plan and judge; create no tag")
    p.add_argument("--pr", default=None, help="pull request number for the audit record")
    p.add_argument("--approver", default=None, help="approving reviewer for the audit record")
    p.add_argument("--artifact", default=None, help="model file to check against dvc.lock")
    p.add_argument("--push", action="store_true", help="push the new tags to origin atomically")
    p.add_argument(
        "--policy-rev",
        default=None,
        help="dry run: judge with the policy file as committed at this rev (the PR's base)",
    )
    p.add_argument("--format", choices=("md", "json"), default="md", help="output format")
    p.add_argument("--output", default=None, help="write the report here instead of stdout")
    p.set_defaults(handler=_cmd_reconcile)


def _cmd_reconcile(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pipeline.registry import reconcile, render_reconcile

    params = load_params(args.params)
    result = reconcile(
        params,
        Path.cwd(),
        dry_run=args.dry_run,
        pr=args.pr,
        approver=args.approver,
        artifact=Path(args.artifact) if args.artifact else None,
        push=args.push,
        policy_rev=args.policy_rev,
    )
    _emit(render_reconcile(result, args.format), args.output)
    return 0 if result.passed else 1


def _add_audit(sub: Any) -> None:
    p = sub.add_parser("audit", help="the registry's stage history with its audit records")
    p.add_argument("--format", choices=("md", "json"), default="md", help="output format")
    p.add_argument("--output", default=None, help="write the audit here instead of stdout")
    p.set_defaults(handler=_cmd_audit)


def _cmd_audit(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pipeline.registry import audit, render_audit

    params = load_params(args.params)
    entries = audit(Path.cwd(), params.project.model)
    _emit(render_audit(entries, args.format), args.output)
    return 0 if all(e["intact"] for e in entries) else 1


# --- bring your own data (pipeline/init.py, pipeline/rename.py)


def _add_init(sub: Any) -> None:
    p = sub.add_parser(
        "init",
        help="point the template at your CSV/Parquet table: infer task, features and contract",
        description=(
            "Edit params.yaml (comments kept) and write the data contract from a table. "
            "Refuses (exit 2) to overwrite hand edits unless --force."
        ),
    )
    p.add_argument("--data", required=True, help="CSV or Parquet file: local path or http(s) URL")
    p.add_argument("--target", required=True, help="label column")
    p.add_argument(
        "--task",
        choices=("binary", "multiclass", "regression"),
        default=None,
        help="override the inferred task",
    )
    p.add_argument("--sensitive", default=None, help="sensitive attribute (never a feature)")
    p.add_argument("--force", action="store_true", help="overwrite hand edits of the files")
    p.add_argument("--dry-run", action="store_true", help="show what would change; write nothing")
    p.set_defaults(handler=_cmd_init)


def _cmd_init(args: argparse.Namespace) -> int:
    from pipeline.init import initialize

    result = initialize(
        args.data,
        args.target,
        params_path=args.params,
        task=args.task,
        sensitive=args.sensitive,
        force=args.force,
        dry_run=args.dry_run,
    )
    _emit(result.text, None)
    return 0


def _add_rename(sub: Any) -> None:
    p = sub.add_parser(
        "rename",
        help="set the project and model names everywhere they appear",
        description="Names: lowercase letters, digits and dashes. Idempotent.",
    )
    p.add_argument("--project", required=True, help="project name (package, README title)")
    p.add_argument("--model", required=True, help="model name in the registry (GTO tags)")
    p.add_argument("--dry-run", action="store_true", help="list the files that would change")
    p.set_defaults(handler=_cmd_rename)


def _cmd_rename(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pipeline.rename import rename

    result = rename(Path(args.params), args.project, args.model, dry_run=args.dry_run)
    _emit(result.text, None)
    return 0


def _add_report(sub: Any) -> None:
    p = sub.add_parser(
        "report",
        help="compare the workspace's results with a base revision (the PR comment)",
        description="Metrics, params, data/model hashes, slices, fairness and the policy "
        "verdict of the workspace against --base (default: merge-base of HEAD with "
        "origin/<target>).",
    )
    p.add_argument("--base", default=None, help="git revision to compare with")
    p.add_argument(
        "--target", default="main", help="target branch for the merge-base (default: %(default)s)"
    )
    p.add_argument("--format", choices=("md", "json"), default="md", help="output format")
    p.add_argument("--policy", default=None, help="verdict JSON of `policy check --format json`")
    p.add_argument("--output", default=None, help="file to write (default: stdout)")
    p.set_defaults(handler=_cmd_report)


def _cmd_report(args: argparse.Namespace) -> int:
    from pipeline.report import run as run_report

    params = load_params(args.params)
    text = run_report(
        params,
        params_file=args.params,
        base=args.base,
        target=args.target,
        policy_file=args.policy,
        output_format=args.format,
    )
    _emit(text, args.output)
    return 0


def _add_config_check(sub: Any) -> None:
    p = sub.add_parser(
        "config-check",
        help="parse and validate params.yaml, dvc.yaml and every policy (CI runs it before "
        "`dvc repro`)",
    )
    p.set_defaults(handler=_cmd_config_check)


def _cmd_config_check(args: argparse.Namespace) -> int:
    # Each file through the project's own parser first (no aliases, bounded size), so a hostile
    # pull request is refused in a second instead of tying DVC's parser up for minutes.
    from pipeline.config import load_yaml
    from pipeline.monitor import load_monitoring
    from pipeline.policy import load_policy
    from pipeline.registry import load_desired
    from pipeline.validate import load_contract

    paths = stage_params(args.params).paths
    load_yaml("dvc.yaml")
    load_contract(paths.contract)
    load_policy(paths.promotion)
    load_monitoring(paths.monitoring)
    load_desired(paths.registry)
    _emit(f"{args.params}, dvc.yaml and the policies parse and validate", None)
    return 0


def _add_gate(sub: Any) -> None:
    p = sub.add_parser(
        "gate",
        help="a PR's required check: exit 1 unless the policy passed and dvc.lock is committed",
    )
    p.add_argument("report", help="the PR report's JSON (`report --format json`)")
    p.add_argument(
        "--markdown", default=None, help="also append the verdict as Markdown to this file"
    )
    p.set_defaults(handler=_cmd_gate)


def _cmd_gate(args: argparse.Namespace) -> int:
    from pipeline.errors import InputError
    from pipeline.io import append_text, read_json
    from pipeline.report import gate, gate_markdown

    doc = read_json(args.report)
    if not isinstance(doc, dict) or doc.get("marker") is None:
        raise InputError(f"{args.report}: not a PR report (run `report --format json`)")
    reasons = gate(doc)
    for reason in reasons:
        print(f"::error title=Required check::{reason}")
    if not reasons:
        print("the policy passed and dvc.lock is the one the pipeline produces")
    if args.markdown:  # the job summary: kept whatever happens to the log's last lines
        append_text(args.markdown, gate_markdown(reasons))
    return 1 if reasons else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ml-pipeline", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--params", default="params.yaml", help="params file (default: %(default)s)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in ADDERS:
        add(sub)
    return parser


# Helpers append their `_add_<command>` here; order is the order of `--help`.
ADDERS: list[Callable[[Any], None]] = [
    _add_stages,
    _add_predict,
    _add_generate,
    _add_monitor,
    _add_policy,
    _add_register,
    _add_promote,
    _add_rollback,
    _add_reconcile,
    _add_audit,
    _add_init,
    _add_rename,
    _add_report,
    _add_gate,
    _add_config_check,
]


def main(argv: Sequence[str] | None = None, *, own_process: bool = False) -> int:
    """Run one command. own_process: this process exists only for it (see import_stage)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    args.own_process = own_process
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
    except OSError as exc:  # disk full, permission denied, read-only file system...
        if args.verbose:
            raise
        print(f"error: {os_error(exc)}", file=sys.stderr)
        return 2  # the environment stopped the command: like bad input, not a failed check


def os_error(exc: OSError) -> str:
    """One line naming the path and the operating system's reason, e.g.
    'data/raw/dataset.parquet: No space left on device (ENOSPC)'."""
    reason = exc.strerror or str(exc)
    code = errno.errorcode.get(exc.errno or 0)
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{reason}" + (f" ({code})" if code else "") + " (run with -v for details)"


def entry() -> int:
    """The process entry point: the `ml-pipeline` console script and `python -m pipeline`."""
    return main(own_process=True)
