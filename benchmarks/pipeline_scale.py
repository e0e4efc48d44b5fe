"""Pipeline overhead at scale: the template's `dvc repro` vs a minimal hand-written script.

For each size, a fresh git copy of the template generates the data (`dvc repro ingest`, not
timed: both sides then read the same file), then we time the rest of the DAG (validate ->
features -> train -> evaluate, including DVC hashing and every report file) and the minimal
script doing the same read, split, fit and evaluation with the same model (and, for
reference, the same script stopping at the headline metrics). All run in fresh processes,
alternated, on the same machine in the same run, so only their ratios matter. Also timed: a
no-op `dvc repro` (nothing changed), next to the no-op of a one-stage DVC project (DVC's own
start-up and exit: the floor). With --repeats N each figure is the best of N.

    python benchmarks/pipeline_scale.py [--rows 100000 1000000] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}


def same_model(baseline_stdout: str, repo: Path) -> None:
    """Refuse to compare unless the baseline fitted the same model: equal overall metrics."""
    ours = json.loads((repo / "models/metrics.json").read_text())
    theirs = json.loads(baseline_stdout)["metrics"]
    differ = [k for k, v in ours.items() if not math.isclose(v, theirs[k], rel_tol=1e-5)]
    if differ or not ours:
        raise SystemExit(f"baseline fitted another model: {differ} differ ({ours} vs {theirs})")


def measure(cmd: list[str], cwd: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/measure.py"), *cmd],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        check=True,
    )
    lines = out.stdout.strip().splitlines()
    result: dict[str, Any] = json.loads(lines[-1])
    if result["returncode"] != 0:
        raise SystemExit(f"{cmd} failed:\n{out.stdout}\n{out.stderr}")
    result["stdout"] = "\n".join(lines[:-1])
    return result


def template_copy(dest: Path, rows: int | None = None) -> Path:
    """Copy the template's files into a new git repository at dest, with `rows` rows if given."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for rel in filter(None, files):
        if (ROOT / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)
    if rows is not None:
        params = dest / "params.yaml"
        text, found = re.subn(r"(\n    rows: )\d+", rf"\g<1>{rows}", params.read_text(), count=1)
        if not found:  # else the benchmark would silently run the default size
            raise SystemExit(f"{params}: no `rows:` setting under ingest to set to {rows}")
        params.write_text(text)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True, env=ENV)
    commit(dest)
    return dest


def commit(repo: Path) -> None:
    """Commit everything in repo (a throwaway benchmark repository)."""
    for args in (
        ["add", "-A"],
        ["-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "t"],
    ):
        subprocess.run(["git", *args], cwd=repo, check=True, env=ENV)


def bench(rows: int, repeats: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"bench-{rows}-") as tmp:
        repo = template_copy(Path(tmp), rows)
        subprocess.run(["dvc", "repro", "-q", "ingest"], cwd=repo, env=ENV, check=True)
        script = [sys.executable, str(ROOT / "benchmarks/baseline_fit.py")]
        script += ["data/raw/dataset.parquet", "params.yaml"]
        pipe, base, headline, noop = [], [], [], []
        for _ in range(repeats):
            # Force the downstream stages to run again on every repeat.
            pipe.append(
                measure(["dvc", "repro", "-q", "--force", "--downstream", "validate"], repo)
            )
            base.append(measure(script, repo))
            headline.append(measure([*script, "--headline-only"], repo))
            same_model(base[-1]["stdout"], repo)
            noop.append(measure(["dvc", "repro", "-q"], repo))
        best = lambda runs, key: min(r[key] for r in runs)  # noqa: E731 - least noisy figure
        return {
            "rows": rows,
            "pipeline_s": best(pipe, "wall_s"),
            "baseline_s": best(base, "wall_s"),
            "time_ratio": best(pipe, "wall_s") / best(base, "wall_s"),
            # Per repeat (pipeline and baseline run back to back): the spread of the ratio.
            "ratios": sorted(p["wall_s"] / b["wall_s"] for p, b in zip(pipe, base, strict=True)),
            "headline_s": best(headline, "wall_s"),
            "headline_ratio": best(pipe, "wall_s") / best(headline, "wall_s"),
            "pipeline_peak_mib": best(pipe, "peak_mib"),
            "baseline_peak_mib": best(base, "peak_mib"),
            "memory_ratio": best(pipe, "peak_mib") / best(base, "peak_mib"),
            "noop_repro_s": best(noop, "wall_s"),
            "runs": {
                name: [r["wall_s"] for r in runs]
                for name, runs in (("pipeline", pipe), ("baseline", base), ("no-op", noop))
            },
        }


def dvc_floor_repo(repo: Path) -> Path:
    """A one-stage DVC project (`cp in.txt out.txt`), reproduced once: DVC's floor."""
    repo.mkdir(parents=True)
    (repo / "in.txt").write_text("x\n")
    (repo / "dvc.yaml").write_text(
        "stages:\n  copy:\n    cmd: cp in.txt out.txt\n    deps: [in.txt]\n    outs: [out.txt]\n"
    )
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "repro", "-q"]):
        subprocess.run(cmd, cwd=repo, env=ENV, check=True)
    return repo


def dvc_floor(repeats: int) -> list[float]:
    """No-op `dvc repro` of a one-stage DVC project: DVC's own start-up and exit, the floor."""
    with tempfile.TemporaryDirectory(prefix="bench-dvc-floor-") as tmp:
        repo = dvc_floor_repo(Path(tmp) / "one-stage")
        return [measure(["dvc", "repro", "-q"], repo)["wall_s"] for _ in range(repeats)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    columns = [
        "rows", "pipeline s", "baseline s", "time ratio", "headline-only s", "ratio to it",
        "pipeline peak MiB", "baseline peak MiB", "memory ratio", "no-op repro s",
    ]  # fmt: skip
    print("| " + " | ".join(columns) + " |")
    print("|" + "---:|" * len(columns))
    for rows in args.rows:
        r = bench(rows, args.repeats)
        print(
            f"| {rows:,} | {r['pipeline_s']:.1f} | {r['baseline_s']:.1f} | {r['time_ratio']:.2f} | "
            f"{r['headline_s']:.1f} | {r['headline_ratio']:.2f} | "
            f"{r['pipeline_peak_mib']:.0f} | {r['baseline_peak_mib']:.0f} | "
            f"{r['memory_ratio']:.2f} | {r['noop_repro_s']:.2f} |",
            flush=True,
        )
        print(f"  time ratio per repeat: {', '.join(f'{x:.2f}' for x in r['ratios'])}", flush=True)
        for name, seconds in r["runs"].items():
            print(f"  {name} s per repeat: {', '.join(f'{x:.2f}' for x in seconds)}", flush=True)
    floor = dvc_floor(max(args.repeats, 3))
    print(
        f"no-op `dvc repro` of a one-stage DVC project (DVC's floor): best {min(floor):.2f} s; "
        f"per repeat: {', '.join(f'{x:.2f}' for x in floor)}"
    )


if __name__ == "__main__":
    main()
