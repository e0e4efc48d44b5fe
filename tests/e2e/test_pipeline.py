"""The real `dvc repro` in a fresh git repo: runs, is a no-op the second time, is
byte-reproducible across clean clones, and reruns only what a parameter change touches."""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

import pytest

from pipeline.config import load_params, parse_yaml
from pipeline.registry import lock_outs
from tests.conftest import clone_of, git, make_template_repo, run, set_param

pytestmark = pytest.mark.e2e

STAGES = ["ingest", "validate", "features", "train", "evaluate", "benchmark"]
# Every git-tracked output except the benchmark, which measures wall-clock latency.
STABLE_OUTPUTS = [
    "models/metrics.json",
    "models/slices.json",
    "models/fairness.json",
    "models/reference.json",
    "models/features.json",
    "models/validation.json",
]


def ran_stages(output: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", output)


def lock_md5(repo: Path, path: str) -> str:
    lock = parse_yaml((repo / "dvc.lock").read_text(), "dvc.lock")
    for stage in lock["stages"].values():
        for out in stage.get("outs", []):
            if out["path"] == path:
                return str(out["md5"])
    raise AssertionError(f"{path} not in dvc.lock")


def test_repro_produces_every_output(reproduced_repo: Path) -> None:
    metrics = json.loads((reproduced_repo / "models/metrics.json").read_text())
    assert set(metrics) >= {"accuracy", "roc_auc", "f1", "precision", "recall", "log_loss"}
    assert 0.6 < metrics["roc_auc"] <= 1.0, "the default data should be learnable"
    for rel in [*STABLE_OUTPUTS, "models/benchmark.json", "models/model.skops"]:
        assert (reproduced_repo / rel).is_file(), rel
    for plot in ("roc", "precision_recall", "confusion", "calibration"):
        assert (reproduced_repo / "models/plots" / f"{plot}.json").is_file(), plot
    lock = parse_yaml((reproduced_repo / "dvc.lock").read_text(), "dvc.lock")
    assert list(lock["stages"]) == STAGES


def test_second_repro_runs_nothing(reproduced_repo: Path, tmp_path: Path) -> None:
    repo = clone_of(reproduced_repo, tmp_path / "again")
    proc = run(["dvc", "repro"], repo)
    assert ran_stages(proc.stdout) == []
    assert json.loads(run(["dvc", "status", "--json"], repo).stdout) == {}
    assert git(repo, "status", "--porcelain") == ""


def test_two_clean_clones_are_byte_identical(reproduced_repo: Path, tmp_path: Path) -> None:
    other = make_template_repo(tmp_path / "other")
    run(["dvc", "repro", "-q"], other)
    for rel in STABLE_OUTPUTS:
        assert (other / rel).read_bytes() == (reproduced_repo / rel).read_bytes(), rel
    for plot in sorted((reproduced_repo / "models/plots").iterdir()):
        assert (other / "models/plots" / plot.name).read_bytes() == plot.read_bytes(), plot
    for rel in ("models/model.skops", "data/raw/dataset.parquet", "data/processed/train.parquet"):
        assert lock_md5(other, rel) == lock_md5(reproduced_repo, rel), rel


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("min_slice_size", "60", ["evaluate"]),
        ("max_iter", "50", ["train", "evaluate", "benchmark"]),
        ("test_size", "0.25", ["features", "train", "evaluate", "benchmark"]),
        ("repeats", "5", ["benchmark"]),
    ],
)
def test_param_change_reruns_only_downstream(
    reproduced_repo: Path, tmp_path: Path, key: str, value: str, expected: list[str]
) -> None:
    repo = clone_of(reproduced_repo, tmp_path / "changed")
    set_param(repo / "params.yaml", key, value)
    proc = run(["dvc", "repro"], repo)
    assert ran_stages(proc.stdout) == expected


def test_a_fresh_clones_repro_leaves_git_clean(reproduced_repo: Path, tmp_path: Path) -> None:
    """What a new user does first (`make run` is `dvc repro`): a `git clone` has no data, no
    model and no DVC cache, so the stages that make them rerun. The model comes out
    byte for byte the same, so the benchmark stage is unchanged and the committed latency
    figures stay: the user's first commit carries no timing noise."""
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(reproduced_repo), str(clone))
    assert not (clone / "models/model.skops").exists()
    proc = run(["dvc", "repro"], clone)
    # the stages whose DVC-cached outputs a clone lacks; validate's output is in git, and its
    # input comes out of ingest byte for byte, so DVC skips it like the benchmark
    assert ran_stages(proc.stdout) == ["ingest", "features", "train", "evaluate"]
    assert "Stage 'benchmark' didn't change, skipping" in proc.stdout
    assert git(clone, "status", "--porcelain") == ""
    assert json.loads(run(["dvc", "status", "--json"], clone).stdout) == {}


def test_dvc_exp_show_lists_the_model_metrics_not_every_slice(reproduced_repo: Path) -> None:
    """Per-slice figures and the reference profile are outputs the report reads, not DVC
    metrics: declared as metrics they made `dvc exp show` ~270 columns wide."""
    rows = json.loads(run(["dvc", "exp", "show", "--json"], reproduced_repo).stdout)
    files = set(rows[0]["data"]["metrics"])
    assert files == {"models/metrics.json", "models/fairness.json", "models/benchmark.json"}
    header = run(["dvc", "exp", "show", "--csv"], reproduced_repo).stdout.splitlines()[0]
    assert len(header.split(",")) < 130


def test_contract_failure_stops_the_dag(template_repo: Path) -> None:
    contract = template_repo / "policies/contract.yaml"
    # Demand more rows than the data has: validate must fail and nothing downstream may run.
    set_param(contract, "min_rows", "1000000")
    proc = run(["dvc", "repro"], template_repo, check=False)
    assert proc.returncode != 0
    assert ran_stages(proc.stdout) == ["ingest", "validate"]
    assert "min_rows" in proc.stdout + proc.stderr or "rows" in proc.stdout + proc.stderr
    assert not (template_repo / "models/validation.json").exists()
    assert not (template_repo / "models/model.skops").exists()
    assert not (template_repo / "data/processed/train.parquet").exists()


def test_dvc_artifacts_get_downloads_a_registered_version(
    reproduced_repo: Path, tmp_path: Path
) -> None:
    """The model is a DVC artifact under the registry's name: DVC's own command fetches the
    bytes of a version by its GTO tag, and they are the ones dvc.lock pins."""
    repo = clone_of(reproduced_repo, tmp_path / "repo")
    run([sys.executable, "-m", "pipeline", "register"], repo)
    model = load_params(repo / "params.yaml").project.model
    out = tmp_path / "fetched.skops"
    run(["dvc", "artifacts", "get", ".", model, "--rev", "v0.1.0", "-o", out], repo)
    expected = lock_outs(repo, f"{model}@v0.1.0")["models/model.skops"]
    assert hashlib.md5(out.read_bytes(), usedforsecurity=False).hexdigest() == expected
