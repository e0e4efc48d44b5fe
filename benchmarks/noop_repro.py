"""Where a no-op `dvc repro` spends its time: the template against DVC's own floor.

A no-op `dvc repro` (nothing changed, no stage runs) is mostly DVC's own process. This script
builds, in temporary git repositories, the variants below and times each one's no-op
alternately, round after round, so that the machine's noise hits all of them alike:

- **one-stage**: a one-stage DVC project (`cp in.txt out.txt`), DVC's floor;
- **template**: this template at its default size;
- **literal paths**: the template with every `${paths.*}` in dvc.yaml written out, so the
  difference to `template` is what DVC's templating costs;
- **... no final GC** (the one-stage project and the template): the same `dvc repro`, run as
  `dvc.cli.main()` in a Python process that calls `gc.freeze()` before it exits. The
  difference is the interpreter's exit, whose garbage collections walk every object DVC's
  imports left alive. Only DVC's own entry point could skip that; it is measured here, not
  changed.

    python benchmarks/noop_repro.py [--rounds 10]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from pipeline_scale import ENV, commit, dvc_floor_repo, measure, template_copy

# `dvc repro -q` in-process, then freeze every object so the interpreter's exit collects none.
NO_FINAL_GC = (
    "import gc, sys\n"
    "from dvc.cli import main\n"
    "code = main(['repro', '-q'])\n"
    "gc.freeze()\n"
    "sys.exit(code)\n"
)


def literal_paths(repo: Path) -> int:
    """Write every `${paths.<name>}` in dvc.yaml out from params.yaml; return how many."""
    paths = yaml.safe_load((repo / "params.yaml").read_text())["paths"]
    dvc_yaml = repo / "dvc.yaml"
    text, count = re.subn(
        r"\$\{paths\.(\w+)\}", lambda m: str(paths[m.group(1)]), dvc_yaml.read_text()
    )
    if not count:  # else the "literal" variant would silently be the template itself
        raise SystemExit(f"{dvc_yaml}: no ${{paths.*}} expression to write out")
    dvc_yaml.write_text(text)
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    dvc, no_final_gc = ["dvc", "repro", "-q"], [sys.executable, "-c", NO_FINAL_GC]
    with tempfile.TemporaryDirectory(prefix="bench-noop-") as tmp:
        one = dvc_floor_repo(Path(tmp) / "one-stage")
        template = template_copy(Path(tmp) / "template")
        literal = template_copy(Path(tmp) / "literal")
        expressions = literal_paths(literal)
        commit(literal)
        for repo in (template, literal):
            subprocess.run(dvc, cwd=repo, env=ENV, check=True)  # the one run that does work
            if subprocess.run(["dvc", "status", "-q"], cwd=repo, env=ENV).returncode:
                raise SystemExit(f"{repo.name}: not up to date after `dvc repro`")
        variants = {
            "one-stage": (dvc, one),
            "one-stage, no final GC": (no_final_gc, one),
            "template": (dvc, template),
            f"literal paths ({expressions} expressions written out)": (dvc, literal),
            "template, no final GC": (no_final_gc, template),
        }
        runs: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, (cmd, repo) in variants.items():
                runs[name].append(measure(cmd, repo)["wall_s"])
    floor = statistics.median(runs["one-stage"])
    print(f"no-op `dvc repro`, {args.rounds} alternating rounds (seconds)")
    print("| variant | median | best | median minus one-stage |")
    print("|---|---:|---:|---:|")
    for name, values in runs.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.2f} | {min(values):.2f} | {median - floor:+.2f} |")


if __name__ == "__main__":
    main()
