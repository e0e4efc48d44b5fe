"""pipeline/report.py: deltas, direction markers, params/lock diffs, policy, charts, size cap."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from pipeline import report as rp
from pipeline.errors import InputError
from tests.conftest import git, make_template_repo, run

BASE_METRICS = {"accuracy": 0.8, "roc_auc": 0.85, "log_loss": 0.45, "f1": 0.6}
NEW_METRICS = {"accuracy": 0.82, "roc_auc": 0.85, "log_loss": 0.5, "f1": 0.6}

SLICES_BASE = {
    "region": {
        "north": {"n": 120, "metrics": {"accuracy": 0.8, "log_loss": 0.4}},
        "south": {"n": 30, "metrics": None},
    }
}
SLICES_NEW = {
    "region": {
        "north": {"n": 120, "metrics": {"accuracy": 0.7, "log_loss": 0.3}},
        "south": {"n": 30, "metrics": None},
    }
}
FAIR_BASE = {
    "sensitive": "sex",
    "metrics": {"demographic_parity_difference": 0.1, "demographic_parity_ratio": 0.8},
    "groups": {"female": {"n": 100, "selection_rate": 0.3, "accuracy": 0.8}},
}
FAIR_NEW = {
    "sensitive": "sex",
    "metrics": {"demographic_parity_difference": 0.05, "demographic_parity_ratio": 0.9},
    "groups": {"female": {"n": 100, "selection_rate": 0.35, "accuracy": 0.78}},
}
LOCK_BASE = {
    "stages": {
        "ingest": {"outs": [{"path": "data/raw/dataset.parquet", "md5": "a" * 32}]},
        "train": {"outs": [{"path": "models/model.skops", "md5": "b" * 32}]},
        "evaluate": {"outs": [{"path": "models/metrics.json", "md5": "c" * 32}]},
    }
}
LOCK_NEW = {
    "stages": {
        "ingest": {"outs": [{"path": "data/raw/dataset.parquet", "md5": "a" * 32}]},
        "train": {"outs": [{"path": "models/model.skops", "md5": "d" * 32}]},
        "evaluate": {"outs": [{"path": "models/metrics.json", "md5": "e" * 32}]},
    }
}
VERDICT = {
    "stage": "staging",
    "passed": False,
    "candidate": {"rev": "workspace"},
    "holder": None,
    "rules": [
        {"rule": "min_accuracy", "passed": True, "reason": "accuracy 0.82 >= 0.7"},
        {"rule": "max_log_loss", "passed": False, "reason": "log_loss 0.5 > 0.48 | limit"},
    ],
}


def make_report(**overrides: Any) -> rp.Report:
    base = rp.Inputs(
        metrics=BASE_METRICS,
        slices=SLICES_BASE,
        fairness=FAIR_BASE,
        params={"train": {"kwargs": {"learning_rate": 0.1, "max_iter": 200}}, "task": "x"},
        lock=LOCK_BASE,
    )
    new = rp.Inputs(
        metrics=NEW_METRICS,
        slices=SLICES_NEW,
        fairness=FAIR_NEW,
        params={"train": {"kwargs": {"learning_rate": 0.05, "max_iter": 200}}, "task": "x"},
        lock=LOCK_NEW,
    )
    kwargs: dict[str, Any] = {
        "base_rev": rp.Revision("f" * 40, "merge-base with `origin/main` (fffffff)"),
        "head_rev": rp.Revision("workspace", "this PR"),
        "model_path": "models/model.skops",
        "lock_stale": (),
        "policy": VERDICT,
    }
    kwargs.update(overrides)
    return rp.compare(base, new, **kwargs)


# --------------------------------------------------------------------------- pure comparison


@pytest.mark.parametrize(
    ("name", "base", "new", "verdict"),
    [
        ("accuracy", 0.8, 0.82, rp.BETTER),
        ("accuracy", 0.8, 0.78, rp.WORSE),
        ("log_loss", 0.5, 0.4, rp.BETTER),
        ("log_loss", 0.4, 0.5, rp.WORSE),
        ("rmse", 3.0, 3.0, rp.SAME),
        ("accuracy", None, 0.8, rp.ADDED),
        ("accuracy", 0.8, None, rp.REMOVED),
        ("mystery", 1.0, 2.0, rp.UNKNOWN),
    ],
)
def test_metric_delta_uses_direction(name: str, base: Any, new: Any, verdict: str) -> None:
    assert rp.metric_delta(name, base, new).verdict == verdict


def test_metric_delta_values() -> None:
    d = rp.metric_delta("accuracy", 0.8, 0.82)
    assert d.change == pytest.approx(0.02)
    assert d.relative == pytest.approx(0.025)
    zero = rp.metric_delta("r2", 0.0, 0.5)
    assert zero.relative is None
    assert zero.verdict == rp.BETTER
    # non-numbers (bool, str, NaN) are not metrics: treated as absent, never compared
    assert rp.metric_delta("accuracy", True, "x").verdict == rp.UNKNOWN
    assert rp.metric_delta("accuracy", float("nan"), 0.5).verdict == rp.ADDED


def test_compare_metrics_keeps_order_and_removed() -> None:
    deltas = rp.compare_metrics({"a": 1.0, "gone": 2.0}, {"b": 1.0, "a": 1.0})
    assert [d.name for d in deltas] == ["b", "a", "gone"]
    assert deltas[2].verdict == rp.REMOVED


def test_flatten_and_params_diff() -> None:
    assert rp.flatten({"a": {"b": 1, "c": [1, 2], "d": {}}}) == {"a.b": 1, "a.c": [1, 2], "a.d": {}}
    changes = rp.compare_params(
        {"a": {"b": 1, "gone": True}, "s": "x", "t": 1},
        {"a": {"b": 2, "added": None}, "s": "x", "t": 1.0},
    )
    assert [(c.key, c.base, c.new) for c in changes] == [
        ("a.added", None, None),
        ("a.b", 1, 2),
        ("a.gone", True, None),
        ("t", 1, 1.0),  # an int that became a float is a change DVC would see
    ]


def test_compare_locks_lists_changed_outputs_model_first() -> None:
    changes = rp.compare_locks(LOCK_BASE, LOCK_NEW, model_path="models/model.skops")
    assert [(c.path, c.kind, c.stage) for c in changes] == [
        ("models/model.skops", "model", "train"),
        ("models/metrics.json", "output", "evaluate"),
    ]
    assert changes[0].base == "b" * 32
    assert changes[0].new == "d" * 32
    added = rp.compare_locks(None, LOCK_NEW, model_path="models/model.skops")
    assert {c.path for c in added} == {
        "data/raw/dataset.parquet",
        "models/model.skops",
        "models/metrics.json",
    }
    assert all(c.base is None for c in added)


def test_slices_and_fairness_deltas() -> None:
    report = make_report()
    north = next(s for s in report.slices if s.value == "north")
    by_name = {d.name: d for d in north.metrics}
    assert by_name["accuracy"].verdict == rp.WORSE
    assert by_name["log_loss"].verdict == rp.BETTER
    south = next(s for s in report.slices if s.value == "south")
    assert south.metrics == ()
    assert south.n_new == 30
    fm = {d.name: d for d in report.fairness_metrics}
    assert fm["demographic_parity_difference"].verdict == rp.BETTER
    assert fm["demographic_parity_ratio"].verdict == rp.BETTER
    [female] = report.fairness_groups
    assert {d.name for d in female.metrics} == {"selection_rate", "accuracy"}
    assert report.sensitive == "sex"


# --------------------------------------------------------------------------- markdown


def test_markdown_has_marker_deltas_and_markers() -> None:
    md = rp.render_markdown(make_report())
    assert md.startswith(rp.MARKER)
    assert md.count(rp.MARKER) == 1
    row = next(line for line in md.splitlines() if line.startswith("| `accuracy`"))
    assert row == "| `accuracy` | 0.8000 | 0.8200 | +0.0200 | +2.50% | 🟢 better |"
    row = next(line for line in md.splitlines() if line.startswith("| `log_loss`"))
    assert "+0.0500" in row
    assert "🔴 worse" in row
    row = next(line for line in md.splitlines() if line.startswith("| `roc_auc`"))
    assert "⚪ unchanged" in row
    assert "metrics: 1 better, 1 worse" in md
    assert "| `train.kwargs.learning_rate` | 0.1 | 0.05 |" in md
    assert "max_iter" not in md  # unchanged params are not listed
    assert "| `models/model.skops` | model | `train` | `bbbbbbbb` | `dddddddd` |" in md
    assert "data/raw/dataset.parquet" not in md  # unchanged data is not listed
    # git-tracked outputs (metrics JSON, plots) are named, not tabulated with hashes
    assert "Git-tracked outputs also changed: `models/metrics.json`." in md
    assert "| `models/metrics.json` |" not in md
    assert "✅ `dvc.lock` is up to date" in md
    assert "### Fairness over `sex`" in md
    assert "<summary>By <code>region</code> (2 values, 1 worse)</summary>" in md


def test_markdown_policy_section() -> None:
    md = rp.render_markdown(make_report())
    assert "### Promotion policy (`staging`): ❌ failed" in md
    assert "| min_accuracy | ✅ pass | accuracy 0.82 >= 0.7 |" in md
    # a pipe inside a reason cannot break the table
    assert "| max_log_loss | ❌ fail | log_loss 0.5 > 0.48 \\| limit |" in md
    passed = rp.render_markdown(make_report(policy={**VERDICT, "passed": True}))
    assert "### Promotion policy (`staging`): ✅ passed" in passed
    absent = rp.render_markdown(make_report(policy=None))
    assert "### Promotion policy\n\nNot evaluated." in absent
    assert "policy: not evaluated" in absent


def test_markdown_stale_and_unknown_lock() -> None:
    stale = rp.render_markdown(make_report(lock_stale=("train", "evaluate")))
    assert "⚠️ `dvc.lock` is stale (`train`, `evaluate`)" in stale
    unknown = rp.render_markdown(make_report(lock_stale=None))
    assert "status unknown" in unknown


def test_markdown_mermaid_chart() -> None:
    md = rp.render_markdown(make_report())
    charts = re.findall(r"```mermaid\n(.*?)```", md, flags=re.DOTALL)
    assert charts, md
    metrics_chart = charts[0]
    assert metrics_chart.startswith("xychart-beta\n")
    # only 0..1 scores; bars are the new values, the line the base values, same order
    assert 'x-axis ["accuracy", "roc_auc", "log_loss", "f1"]' in metrics_chart
    assert "bar [0.82, 0.85, 0.5, 0.6]" in metrics_chart
    assert "line [0.8, 0.85, 0.45, 0.6]" in metrics_chart
    assert 'y-axis "value" 0 --> 1' in metrics_chart
    assert "https://" not in md  # no third-party image host


def test_chart_labels_cannot_escape_the_fence() -> None:
    chart = rp.mermaid_bars('t"```', ['a"b', "c```\nd"], [None, None], [0.1, 0.2])
    body = chart.removeprefix("```mermaid\n").removesuffix("\n```")
    assert "```" not in body
    assert "line" not in body  # no base values: no line series


def test_missing_base_metrics_note() -> None:
    report = rp.compare(
        rp.Inputs(),
        rp.Inputs(metrics=NEW_METRICS),
        base_rev=rp.Revision("f" * 40, "base"),
        head_rev=rp.Revision("workspace", "head"),
        model_path="models/model.skops",
        lock_stale=(),
        policy=None,
    )
    md = rp.render_markdown(report)
    assert "base revision has no metrics yet" in md
    assert "| `accuracy` | — | 0.8200 | — | — | 🆕 new |" in md


def test_truncation_drops_low_priority_sections_first() -> None:
    many = {f"m{i:04d}": {"n": 100, "metrics": {"accuracy": 0.5}} for i in range(150)}
    report = make_report()
    report = rp.Report(
        **{**report.__dict__, "slices": rp.compare_slices({"big": many}, {"big": many})}
    )
    full = rp.render_markdown(report, max_chars=10**6)
    assert len(full) > 8000
    md = rp.render_markdown(report, max_chars=8000)
    assert len(md) <= 8000
    assert md.startswith(rp.MARKER)
    assert "Truncated to fit a GitHub comment: omitted" in md
    assert "slices" in md.split("omitted", 1)[1]
    assert "### Metrics" in md
    assert "### Promotion policy" in md


def test_truncation_hard_cut_stays_under_limit() -> None:
    # the metrics table is never dropped, so only a hard cut can make this fit
    metrics = {f"metric_with_a_long_name_{i:03d}": 0.5 for i in range(150)}
    report = rp.compare(
        rp.Inputs(),
        rp.Inputs(metrics=metrics),
        base_rev=rp.Revision("f" * 40, "base"),
        head_rev=rp.Revision("workspace", "head"),
        model_path="m",
        lock_stale=(),
        policy=VERDICT,
    )
    md = rp.render_markdown(report, max_chars=3000)
    assert len(md) <= 3000
    assert md.startswith(rp.MARKER)
    assert "the text was cut" in md
    assert md.count("```") % 2 == 0


def test_default_cap_is_under_github_limit() -> None:
    assert rp.DEFAULT_MAX_CHARS < rp.MAX_COMMENT_CHARS
    many = {
        f"col{c}": {f"v{i}": {"n": 1, "metrics": {"accuracy": 0.5}} for i in range(199)}
        for c in range(20)
    }
    report = make_report()
    report = rp.Report(**{**report.__dict__, "slices": rp.compare_slices(many, many)})
    assert len(rp.render_markdown(report)) <= rp.DEFAULT_MAX_CHARS


def test_json_format() -> None:
    doc = json.loads(rp.to_json(make_report()))
    assert doc["marker"] == rp.MARKER
    assert doc["lock_up_to_date"] is True
    accuracy = next(m for m in doc["metrics"] if m["name"] == "accuracy")
    assert accuracy["verdict"] == "better"
    assert accuracy["change"] == pytest.approx(0.02)
    assert doc["policy"]["passed"] is False
    assert doc["params"] == [{"key": "train.kwargs.learning_rate", "base": 0.1, "new": 0.05}]


def test_load_verdict_rejects_bad_shapes(tmp_path: Path) -> None:
    good = tmp_path / "v.json"
    good.write_text(json.dumps(VERDICT))
    assert rp.load_verdict(good)["stage"] == "staging"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"passed": "yes"}))
    with pytest.raises(InputError, match="not a policy verdict"):
        rp.load_verdict(bad)
    with pytest.raises(InputError, match="file not found"):
        rp.load_verdict(tmp_path / "missing.json")


# --------------------------------------------------------------------------- git edges


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.name", "T")
    git(repo, "config", "user.email", "t@example.com")
    git(repo, "config", "commit.gpgsign", "false")
    (repo / "f.txt").write_text("one\n")
    git(repo, "add", "f.txt")
    git(repo, "commit", "-q", "-m", "one")
    return repo


def test_read_at_and_resolve_base_merge_base(tmp_path: Path) -> None:
    origin = _repo(tmp_path)
    fork_point = git(origin, "rev-parse", "HEAD")
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(origin), str(clone)], tmp_path)
    git(clone, "config", "user.name", "T")
    git(clone, "config", "user.email", "t@example.com")
    git(clone, "checkout", "-q", "-b", "pr")
    (clone / "f.txt").write_text("two\n")
    git(clone, "commit", "-q", "-am", "pr change")
    # main moves on after the PR branched: the base must stay the fork point
    (origin / "g.txt").write_text("main\n")
    git(origin, "add", "g.txt")
    git(origin, "commit", "-q", "-m", "main moves")
    git(clone, "fetch", "-q", "origin")
    rev = rp.resolve_base(clone, None)
    assert rev.rev == fork_point
    assert "merge-base with `origin/main`" in rev.label
    assert rp.read_at(clone, rev.rev, "f.txt") == "one\n"
    assert rp.read_at(clone, rev.rev, "nope.txt") is None
    explicit = rp.resolve_base(clone, "HEAD~1")
    assert explicit.rev == fork_point
    with pytest.raises(InputError, match="not found"):
        rp.resolve_base(clone, "no-such-branch")


def test_resolve_base_deepens_a_shallow_clone(tmp_path: Path) -> None:
    origin = _repo(tmp_path)
    for i in range(5):
        (origin / "f.txt").write_text(f"main {i}\n")
        git(origin, "commit", "-q", "-am", f"main {i}")
    fork_point = git(origin, "rev-parse", "HEAD")
    git(origin, "checkout", "-q", "-b", "pr")
    for i in range(3):
        (origin / "f.txt").write_text(f"pr {i}\n")
        git(origin, "commit", "-q", "-am", f"pr {i}")
    git(origin, "checkout", "-q", "main")
    (origin / "g.txt").write_text("later\n")
    git(origin, "add", "g.txt")
    git(origin, "commit", "-q", "-m", "main later")
    # like actions/checkout: one commit of the PR branch, no origin/main
    clone = tmp_path / "shallow"
    run(
        ["git", "clone", "-q", "--depth=1", "--branch", "pr", f"file://{origin}", str(clone)],
        tmp_path,
    )
    assert git(clone, "rev-parse", "--is-shallow-repository") == "true"
    rev = rp.resolve_base(clone, None)
    assert rev.rev == fork_point


def test_resolve_base_without_target_branch(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    with pytest.raises(InputError, match="target branch origin/main not found"):
        rp.resolve_base(repo, None)


# --------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def template_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One template repo for the CLI tests (they only write under out/ or nothing at all)."""
    return make_template_repo(tmp_path_factory.mktemp("report-cli") / "repo")


def _report_cli(repo: Path, *args: str) -> Any:
    return run([sys.executable, "-m", "pipeline", "report", *args], repo, check=False)


def test_cli_report_on_a_fresh_template(template_copy: Path) -> None:
    template_repo = template_copy
    proc = _report_cli(template_repo, "--base", "HEAD", "--output", "out/report.md")
    assert proc.returncode == 0, proc.stderr
    md = (template_repo / "out/report.md").read_text()
    assert md.startswith(rp.MARKER)
    assert "The workspace has no metrics file" in md
    assert "Not evaluated." in md
    proc = _report_cli(template_repo, "--base", "HEAD", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["marker"] == rp.MARKER


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--base", "no-such-rev"], "base revision 'no-such-rev' not found"),
        (["--base", "HEAD", "--policy", "missing.json"], "missing.json: file not found"),
        (["--base", "HEAD", "--policy", "params.yaml"], "params.yaml: not valid JSON"),
        (["--target", "nope"], "target branch origin/nope not found"),
    ],
)
def test_cli_report_bad_input_writes_nothing(
    template_copy: Path, args: list[str], message: str
) -> None:
    template_repo = template_copy
    proc = _report_cli(template_repo, *args, "--output", "report.md")
    assert proc.returncode == 2
    assert message in proc.stderr
    assert not (template_repo / "report.md").exists()


# --------------------------------------------------------------------------- committed lock


def _lock(**stages: dict[str, Any]) -> dict[str, Any]:
    return {"schema": "2.0", "stages": stages}


TRAIN = {
    "cmd": "python -m pipeline train",
    "params": {"params.yaml": {"train.kwargs.learning_rate": 0.1}},
    "outs": [{"path": "models/model.skops", "md5": "a" * 32, "size": 10}],
}
EVALUATE = {
    "cmd": "python -m pipeline evaluate",
    "outs": [
        {"path": "models/metrics.json", "md5": "b" * 32, "size": 5},
        {"path": "models/benchmark.json", "md5": "c" * 32, "size": 7},
    ],
}


def test_uncommitted_stages_names_what_the_commit_lacks() -> None:
    committed = _lock(train=TRAIN, evaluate=EVALUATE)
    assert rp.uncommitted_stages(committed, committed) == ()
    retrained = {**TRAIN, "params": {"params.yaml": {"train.kwargs.learning_rate": 0.2}}}
    assert rp.uncommitted_stages(committed, _lock(train=retrained, evaluate=EVALUATE)) == ("train",)
    new_code = {**TRAIN, "deps": [{"path": "pipeline/train.py", "md5": "9" * 32}]}
    assert rp.uncommitted_stages(committed, _lock(train=new_code, evaluate=EVALUATE)) == ("train",)
    # A stage only one side has is out of date too (a new stage, or no lock committed at all).
    assert rp.uncommitted_stages(_lock(train=TRAIN), committed) == ("evaluate",)
    assert rp.uncommitted_stages(None, committed) == ("evaluate", "train")


def test_uncommitted_stages_ignores_output_bytes() -> None:
    """Same command, deps and params: the lock was made from this code, even where another
    platform's floating point (or the latency benchmark) gave other output bytes."""
    rerun = {
        **EVALUATE,
        "outs": [{"path": "models/benchmark.json", "md5": "e" * 32, "size": 8}],
    }
    assert rp.uncommitted_stages(_lock(evaluate=EVALUATE), _lock(evaluate=rerun)) == ()


PASSED = {"passed": True, "rules": [{"rule": "absolute:roc_auc", "passed": True}]}


@pytest.mark.parametrize(
    ("doc", "reasons"),
    [
        ({"policy": PASSED, "lock_up_to_date": True, "lock_stale": []}, []),
        (
            {
                "policy": {
                    "passed": False,
                    "rules": [{"rule": "absolute:log_loss", "passed": False}],
                },
                "lock_up_to_date": True,
                "lock_stale": [],
            },
            ["the staging policy failed (absolute:log_loss)"],
        ),
        (
            {"policy": None, "lock_up_to_date": True, "lock_stale": []},
            ["the staging policy was not evaluated (see the policy step's log)"],
        ),
        (
            {"policy": PASSED, "lock_up_to_date": False, "lock_stale": ["train"]},
            [f"dvc.lock is stale (train): {rp.STALE_ADVICE}"],
        ),
        (
            {"policy": PASSED, "lock_up_to_date": None, "lock_stale": None},
            ["the dvc.lock status is unknown (`dvc status` failed)"],
        ),
        ({"policy": {"passed": float("nan")}, "lock_up_to_date": "yes"}, None),
    ],
)
def test_gate_fails_closed(doc: dict[str, Any], reasons: list[str] | None) -> None:
    got = rp.gate(doc)
    if reasons is None:  # a malformed report never passes
        assert len(got) == 2
    else:
        assert got == reasons


def test_cli_gate_exit_codes(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"marker": rp.MARKER, "policy": PASSED, "lock_up_to_date": True}))
    stale = tmp_path / "stale.json"
    stale.write_text(
        json.dumps(
            {"marker": rp.MARKER, "policy": PASSED, "lock_up_to_date": False, "lock_stale": ["x"]}
        )
    )
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"passed": True}))
    gate = [sys.executable, "-m", "pipeline", "gate"]
    assert run([*gate, good], tmp_path).returncode == 0
    proc = run([*gate, stale], tmp_path, check=False)
    assert proc.returncode == 1
    assert "::error title=Required check::dvc.lock is stale (x): the committed" in proc.stdout
    proc = run([*gate, other], tmp_path, check=False)
    assert proc.returncode == 2
    assert "not a PR report" in proc.stderr
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    assert run([*gate, stale, "--markdown", summary], tmp_path, check=False).returncode == 1
    assert run([*gate, good, "--markdown", summary], tmp_path).returncode == 0
    assert summary.read_text() == (
        "earlier step\n### Required check: ❌ failed\n\n"
        f"- dvc.lock is stale (x): {rp.STALE_ADVICE}\n"
        "### Required check: ✅ passed\n\nThe policy passed and `dvc.lock` is committed.\n"
    )


def test_report_flags_a_lock_the_pr_did_not_commit(tmp_path: Path) -> None:
    """After `dvc repro` the workspace lock is current, so `dvc status` says nothing; the
    report still calls the PR stale when the committed lock is not the reproduced one."""
    repo = make_template_repo(tmp_path / "repo", rows=1000)
    run(["dvc", "repro", "-q"], repo)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "reproduced")
    assert rp.stale_stages(repo) == ()
    text = (repo / "params.yaml").read_text().replace("learning_rate: 0.1", "learning_rate: 0.05")
    (repo / "params.yaml").write_text(text)
    git(repo, "commit", "-q", "-am", "change a param, no repro")
    assert "train" in (rp.stale_stages(repo) or ())  # dvc status sees it
    run(["dvc", "repro", "-q"], repo)
    assert rp.lock_status(repo) == ()  # dvc status: up to date now
    assert "train" in (rp.stale_stages(repo) or ())  # but HEAD's lock is not this one
    git(repo, "commit", "-q", "-am", "commit the reproduced lock")
    assert rp.stale_stages(repo) == ()


# --------------------------------------------------------------------------- curves


def test_resample_interpolates_on_an_even_grid_and_refuses_bad_rows() -> None:
    diagonal = [{"fpr": 0.0, "tpr": 0.0}, {"fpr": 1.0, "tpr": 1.0}]
    assert rp.resample(diagonal, "fpr", "tpr", points=5) == (0.0, 0.25, 0.5, 0.75, 1.0)
    unsorted = [{"fpr": 1.0, "tpr": 1.0}, {"fpr": 0.0, "tpr": 0.5}]  # sorted by x first
    assert rp.resample(unsorted, "fpr", "tpr", points=3) == (0.5, 0.75, 1.0)
    assert rp.resample([], "fpr", "tpr") is None
    assert rp.resample([{"fpr": 0.1}], "fpr", "tpr") is None
    assert rp.resample([{"fpr": float("nan"), "tpr": 0.2}], "fpr", "tpr") is None
    assert rp.resample(["not a row"], "fpr", "tpr") is None
    assert rp.resample({"fpr": 0.1}, "fpr", "tpr") is None


def test_curves_are_drawn_for_both_sides_and_only_for_written_plots() -> None:
    better = [{"fpr": 0.0, "tpr": 0.0}, {"fpr": 0.1, "tpr": 0.7}, {"fpr": 1.0, "tpr": 1.0}]
    worse = [{"fpr": 0.0, "tpr": 0.0}, {"fpr": 1.0, "tpr": 1.0}]
    curves = rp.compare_curves({"roc": worse}, {"roc": better, "residuals": [{"x": 1}]})
    assert [c.name for c in curves] == ["roc"]  # residuals are not a curve drawn here
    (roc,) = curves
    assert roc.base is not None
    assert roc.new[2] == pytest.approx(0.7)  # x = 0.1 on the 21-point grid
    assert roc.base[2] == pytest.approx(0.1)
    chart = rp.curve_chart(roc)
    assert chart.startswith("```mermaid\n%%{init:")
    assert chart.count("    line [") == 2
    assert 'title "ROC curve: blue PR, yellow base"' in chart
    (first,) = rp.compare_curves(None, {"roc": better})  # the first model: no base line
    assert first.base is None
    assert rp.curve_chart(first).count("    line [") == 1
    assert "no base yet" in rp.curve_chart(first)


def test_curves_section_is_in_the_comment_and_dropped_before_the_metrics() -> None:
    rows = [{"fpr": 0.0, "tpr": 0.0}, {"fpr": 0.2, "tpr": 0.8}, {"fpr": 1.0, "tpr": 1.0}]
    report = make_report()
    with_curves = rp.Report(**{**report.__dict__, "curves": rp.compare_curves(None, {"roc": rows})})
    full = rp.render_markdown(with_curves)
    assert "### Curves" in full
    assert "ROC curve" in full
    assert "### Curves" not in rp.render_markdown(report)  # nothing written, nothing drawn
    short = rp.render_markdown(with_curves, max_chars=len(full) - 50)
    assert "### Curves" not in short or "### Slices" not in short
    assert "### Metrics" in short


def test_relative_change_from_a_base_near_zero_is_capped_not_news() -> None:
    tiny = rp.metric_delta("r2", 0.00001, 0.2)
    assert tiny.relative is not None
    assert tiny.relative > 10
    assert rp.fmt_relative(tiny) == "+>1000%"
    assert rp.fmt_relative(rp.metric_delta("r2", -0.00001, -0.2)) == "−>1000%"
    assert rp.fmt_relative(rp.metric_delta("r2", 0.1, 0.2)) == "+100.00%"  # below the cap


def test_an_empty_section_added_or_removed_is_not_a_param_change() -> None:
    base = {"train": {"model": "a"}}
    new = {"train": {"model": "a", "kwargs": {}}, "extra": []}
    assert rp.compare_params(base, new) == ()
    assert rp.compare_params(new, base) == ()
    filled = {"train": {"model": "a", "kwargs": {"max_iter": 5}}}
    assert rp.compare_params(base, filled) == (rp.ParamChange("train.kwargs.max_iter", None, 5),)
