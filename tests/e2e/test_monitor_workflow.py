"""The monitor end to end: real model, real batches from the generator, the real CLI. The
scheduled workflow itself runs under act in tests/e2e/test_workflows_act.py."""

from __future__ import annotations

import functools
import http.server
import json
import threading
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.conftest import REPO_ROOT, clone_of, git, run, set_param

pytestmark = pytest.mark.e2e

WORKFLOW = REPO_ROOT / ".github" / "workflows" / "monitor.yml"
ROWS = "2000"


@pytest.fixture(scope="module")
def repo(reproduced_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained template repository the tests only read (batches are written under tmp).

    Its reference metrics come from only 600 held-out rows (the e2e dataset is small), so they
    are several points off a fresh batch's by chance alone: the performance limits are widened
    to keep the clean batches clean. Real drops (concept drift) are far larger.
    """
    repo = clone_of(reproduced_repo, tmp_path_factory.mktemp("monitor") / "repo")
    policy = repo / "policies" / "monitoring.yaml"
    for metric, limit in {
        "roc_auc": "0.15",
        "accuracy": "0.15",
        "f1": "0.4",
        "log_loss": "0.5",
    }.items():
        set_param(policy, metric, limit)
    git(repo, "commit", "-q", "-am", "e2e: wider performance limits")
    return repo


def generate(repo: Path, out: Path, seed: int, *knobs: str) -> Path:
    run(
        [
            "python",
            "-m",
            "pipeline",
            "generate",
            "--output",
            out,
            "--rows",
            ROWS,
            "--seed",
            str(seed),
            *knobs,
        ],
        repo,
    )
    return out


def monitor(repo: Path, *args: str | Path) -> tuple[int, dict[str, Any] | None, str]:
    """Run `monitor ... --format json`; (exit code, parsed report or None, stderr)."""
    proc = run(
        ["python", "-m", "pipeline", "monitor", *args, "--format", "json"], repo, check=False
    )
    report = json.loads(proc.stdout) if proc.returncode in (0, 1) else None
    return proc.returncode, report, proc.stderr


# --------------------------------------------------------------------------- the CLI


def test_no_drift_no_breach(repo: Path, tmp_path: Path) -> None:
    batch = generate(repo, tmp_path / "clean.parquet", 301)
    code, report, _ = monitor(repo, batch)
    assert report is not None
    assert code == 0, report["breaches"]
    assert report["breach"] is False
    assert report["drift"]["drifted_features"] == []
    assert report["drift"]["prediction"]["drifted"] is False
    assert report["performance"]["measured"] is True
    assert all(row["passed"] for row in report["performance"]["metrics"])


def test_covariate_shift_flags_that_feature_only(repo: Path, tmp_path: Path) -> None:
    batch = generate(
        repo, tmp_path / "shift.parquet", 302, "--covariate-shift", "debt_ratio=1.0", "--no-label"
    )
    code, report, _ = monitor(repo, batch)
    assert report is not None
    assert report["drift"]["drifted_features"] == ["debt_ratio"]
    assert report["drift"]["features"]["debt_ratio"]["wasserstein"] > 0.5
    assert report["drift"]["target"] is None  # no labels, no label drift
    assert report["performance"] == {
        "measured": False,
        "labelled_rows": 0,
        "metrics": [],
        "reason": "the batch has no labels",
    }
    # One drifted feature of nine is under the share limit; the model output moved, though.
    assert code == (1 if report["breach"] else 0)
    assert not any(b.startswith("feature drift") for b in report["breaches"])


def test_prior_shift_is_label_drift(repo: Path, tmp_path: Path) -> None:
    batch = generate(repo, tmp_path / "prior.parquet", 303, "--prior-shift", "1.5")
    code, report, _ = monitor(repo, batch)
    assert code == 1
    assert report is not None
    assert report["drift"]["drifted_features"] == []
    assert report["drift"]["target"]["drifted"] is True
    assert any(b.startswith("target drift") for b in report["breaches"])


def test_concept_drift_drops_performance(repo: Path, tmp_path: Path) -> None:
    batch = generate(repo, tmp_path / "concept.parquet", 304, "--concept-drift", "1.0")
    code, report, _ = monitor(repo, batch)
    assert code == 1
    assert report is not None
    # The inputs did not move: only the labels' relation to them did.
    assert report["drift"]["drifted_features"] == []
    failed = {row["metric"] for row in report["performance"]["metrics"] if not row["passed"]}
    assert "roc_auc" in failed
    assert any(b.startswith("performance: roc_auc") for b in report["breaches"])


def test_contract_failure_is_a_breach(repo: Path, tmp_path: Path) -> None:
    frame = pd.read_parquet(generate(repo, tmp_path / "ok.parquet", 305))
    frame.loc[frame.index[:7], "age"] = 5
    batch = tmp_path / "bad-ages.csv"
    frame.to_csv(batch, index=False)
    markdown = tmp_path / "report.md"
    proc = run(
        ["python", "-m", "pipeline", "monitor", batch, "--output", markdown], repo, check=False
    )
    assert proc.returncode == 1
    text = markdown.read_text()
    assert "data contract: 1 failing check(s)" in text
    assert "age" in text.split("### Data contract", 1)[1]
    assert "7" in text.split("### Data contract", 1)[1]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.parquet", None, "file not found"),
        ("batch.txt", "a,b\n1,2\n", "unsupported table format"),
        ("tiny.csv", "SMALL", "the monitoring policy needs at least"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(
    repo: Path, tmp_path: Path, name: str, content: str | None, message: str
) -> None:
    batch = tmp_path / name
    if content == "SMALL":
        frame = pd.read_parquet(generate(repo, tmp_path / "src.parquet", 306))
        frame.head(50).to_csv(batch, index=False)
    elif content is not None:
        batch.write_text(content)
    out, side = tmp_path / "out" / "report.md", tmp_path / "out" / "report.json"
    proc = run(
        ["python", "-m", "pipeline", "monitor", batch, "--output", out, "--json-output", side],
        repo,
        check=False,
    )
    assert proc.returncode == 2
    assert message in proc.stderr
    assert not out.exists()
    assert not side.exists()
    assert not (tmp_path / "out").exists()


def test_batch_by_url(repo: Path, tmp_path: Path) -> None:
    """A batch served over http (loopback) is read like a local file."""
    generate(repo, tmp_path / "served.csv", 312)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            url = f"http://127.0.0.1:{server.server_address[1]}/served.csv"
            code, report, stderr = monitor(repo, url)
        finally:
            server.shutdown()
    assert report is not None, stderr
    assert report["batch"] == {"source": url, "rows": 2000}
    assert report["contract"]["passed"] is True  # CSV text coerced to the contract's types
    assert code == (1 if report["breach"] else 0)


def test_latest_takes_the_last_batch_by_name(repo: Path, tmp_path: Path) -> None:
    work = clone_of(repo, tmp_path / "repo")
    production = work / "data" / "production"
    generate(work, production / "2025-01-01.parquet", 307, "--prior-shift", "2")
    generate(work, production / "2025-02-01.parquet", 308)
    (production / "notes.txt").write_text("not a batch")
    code, report, _ = monitor(work, "--latest")
    assert report is not None
    assert report["batch"]["source"] == "data/production/2025-02-01.parquet"
    assert code == 0, report["breaches"]
