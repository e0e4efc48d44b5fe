"""Promotion policy: pure evaluation (fails closed), the shipped file, lock facts from git."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import build
from pipeline.errors import ConfigError
from pipeline.metrics import DIRECTION
from pipeline.policy import (
    Bundle,
    StagePolicy,
    evaluate,
    load_policy,
    lock_consistent_at_rev,
    render,
    verdict_json,
)
from tests.conftest import DEMO_ROOT, REPO_ROOT, git

STAGE: dict[str, Any] = {
    "on_first_model": "absolute_only",
    "on_rollback": "absolute_only",
    "require_data_contract": True,
    "require_lock_up_to_date": True,
    "absolute": [{"metric": "roc_auc", "min": 0.75}, {"metric": "log_loss", "max": 0.6}],
    "vs_holder": [{"metric": "roc_auc", "abs_tolerance": 0.005}],
    "slices": {
        "min_size": 100,
        "rules": [{"metric": "roc_auc", "columns": ["region"], "min": 0.6}],
    },
    "fairness": [
        {
            "metric": "demographic_parity_difference",
            "max": 0.1,
            "justification": "agreed with compliance for lending decisions",
        }
    ],
    "benchmark": [{"metric": "latency_ms_single_p95", "max": 100}],
}


def stage(**changes: Any) -> StagePolicy:
    return build(StagePolicy, {**STAGE, **changes})


def bundle(ref: str = "cand", **metrics: Any) -> Bundle:
    base = {"roc_auc": 0.80, "log_loss": 0.45, "accuracy": 0.8}
    return Bundle(
        ref=ref,
        version=ref,
        metrics={**base, **metrics},
        slices={
            "region": {
                "north": {"n": 400, "metrics": {"roc_auc": 0.78}},
                "tiny": {"n": 12, "metrics": None},
            }
        },
        fairness={"metrics": {"demographic_parity_difference": 0.04}},
        benchmark={"latency_ms_single_p95": 3.2, "model_size_bytes": 1000},
        validation={"passed": True},
        lock_up_to_date=True,
        lock_detail="up to date",
    )


def rule(verdict: Any, name: str) -> Any:
    (found,) = [r for r in verdict.rules if r.rule == name]
    return found


def test_good_candidate_passes_every_rule_with_reasons() -> None:
    verdict = evaluate("production", stage(), bundle(), bundle("holder", roc_auc=0.80), DIRECTION)
    assert verdict.passed, verdict.failures
    names = {r.rule for r in verdict.rules}
    assert {
        "data_contract",
        "dvc_lock",
        "absolute:roc_auc",
        "absolute:log_loss",
        "fairness:demographic_parity_difference",
        "benchmark:latency_ms_single_p95",
        "slice:region:roc_auc=north",
        "vs_holder:roc_auc",
    } <= names
    # the small slice is reported, not judged
    assert "below min size 100" in rule(verdict, "slice:region:roc_auc:small").reason
    assert (
        "agreed with compliance" in rule(verdict, "fairness:demographic_parity_difference").reason
    )


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, None, "0.9", True])
def test_non_finite_or_missing_metric_fails_closed(bad: Any) -> None:
    cand = bundle()
    metrics = dict(cand.metrics or {})
    if bad is None:
        del metrics["roc_auc"]
    else:
        metrics["roc_auc"] = bad
    verdict = evaluate(
        "production", stage(), replace(cand, metrics=metrics), bundle("h"), DIRECTION
    )
    assert not verdict.passed
    assert not rule(verdict, "absolute:roc_auc").passed
    assert "fails closed" in rule(verdict, "absolute:roc_auc").reason
    assert not rule(verdict, "vs_holder:roc_auc").passed


def test_nan_in_holder_fails_the_change_rule() -> None:
    verdict = evaluate("production", stage(), bundle(), bundle("h", roc_auc=math.nan), DIRECTION)
    r = rule(verdict, "vs_holder:roc_auc")
    assert not r.passed
    assert "holder roc_auc" in r.reason
    assert "fails closed" in r.reason


def test_nan_slice_fairness_and_benchmark_fail_closed() -> None:
    cand = replace(
        bundle(),
        slices={"region": {"north": {"n": 400, "metrics": {"roc_auc": math.nan}}}},
        fairness={"metrics": {"demographic_parity_difference": math.inf}},
        benchmark={},
    )
    verdict = evaluate("production", stage(), cand, None, DIRECTION)
    assert not rule(verdict, "slice:region:roc_auc=north").passed
    assert not rule(verdict, "fairness:demographic_parity_difference").passed
    assert not rule(verdict, "benchmark:latency_ms_single_p95").passed


def test_large_slice_without_metrics_fails_and_missing_column_fails() -> None:
    cand = replace(bundle(), slices={"region": {"north": {"n": 400, "metrics": None}}})
    verdict = evaluate("production", stage(), cand, None, DIRECTION)
    assert "missing" in rule(verdict, "slice:region:roc_auc=north").reason
    cand = replace(bundle(), slices={"employment": {}})
    verdict = evaluate("production", stage(), cand, None, DIRECTION)
    assert "no slices for column 'region'" in rule(verdict, "slice:region:roc_auc").reason
    assert not verdict.passed


def test_slices_all_below_min_size_fail() -> None:
    cand = replace(bundle(), slices={"region": {"a": {"n": 5, "metrics": {"roc_auc": 0.9}}}})
    verdict = evaluate("production", stage(), cand, None, DIRECTION)
    assert not rule(verdict, "slice:region:roc_auc").passed


def test_first_model_behaviour_is_stated_by_the_policy() -> None:
    ok = evaluate("production", stage(), bundle(), None, DIRECTION)
    assert ok.passed
    assert "absolute_only" in rule(ok, "first_model").reason
    assert not any(r.rule.startswith("vs_holder") for r in ok.rules)
    refused = evaluate("production", stage(on_first_model="fail"), bundle(), None, DIRECTION)
    assert not refused.passed
    assert "no holder" in rule(refused, "first_model").reason


def test_absolute_tolerance_in_metric_direction() -> None:
    holder = bundle("h", roc_auc=0.800)
    within = evaluate("production", stage(), bundle(roc_auc=0.796), holder, DIRECTION)
    assert rule(within, "vs_holder:roc_auc").passed
    beyond = evaluate("production", stage(), bundle(roc_auc=0.794), holder, DIRECTION)
    r = rule(beyond, "vs_holder:roc_auc")
    assert not r.passed
    # the reason names candidate value, holder value, delta and the tolerance
    assert "0.794" in r.reason
    assert "0.8" in r.reason
    assert "-0.006" in r.reason
    assert "abs tolerance 0.005" in r.reason


def test_lower_is_better_metric_uses_its_direction() -> None:
    policy = stage(vs_holder=[{"metric": "log_loss", "abs_tolerance": 0.01}])
    holder = bundle("h", log_loss=0.40)
    better = evaluate("production", policy, bundle(log_loss=0.30), holder, DIRECTION)
    assert rule(better, "vs_holder:log_loss").passed
    worse = evaluate("production", policy, bundle(log_loss=0.42), holder, DIRECTION)
    assert not rule(worse, "vs_holder:log_loss").passed
    assert "lower is better" in rule(worse, "vs_holder:log_loss").reason


def test_relative_tolerance_and_both_tolerances_must_hold() -> None:
    rel = stage(vs_holder=[{"metric": "roc_auc", "rel_tolerance": 0.01}])
    holder = bundle("h", roc_auc=0.80)  # 1% of 0.80 = 0.008
    assert rule(
        evaluate("p", rel, bundle(roc_auc=0.793), holder, DIRECTION), "vs_holder:roc_auc"
    ).passed
    assert not rule(
        evaluate("p", rel, bundle(roc_auc=0.791), holder, DIRECTION), "vs_holder:roc_auc"
    ).passed
    both = stage(vs_holder=[{"metric": "roc_auc", "rel_tolerance": 0.01, "abs_tolerance": 0.002}])
    r = rule(evaluate("p", both, bundle(roc_auc=0.795), holder, DIRECTION), "vs_holder:roc_auc")
    assert not r.passed  # within 1% but not within 0.002
    assert "rel tolerance 0.01" in r.reason


def test_unknown_direction_fails_closed() -> None:
    policy = stage(vs_holder=[{"metric": "made_up", "abs_tolerance": 1}])
    verdict = evaluate("p", policy, bundle(made_up=1.0), bundle("h", made_up=1.0), DIRECTION)
    assert "direction unknown" in rule(verdict, "vs_holder:made_up").reason


def test_rollback_skips_change_rules_only_when_the_policy_says_so() -> None:
    worse = bundle(roc_auc=0.76)
    holder = bundle("h", roc_auc=0.85)
    skipped = evaluate("p", stage(), worse, holder, DIRECTION, rollback=True)
    assert skipped.passed
    assert "on_rollback is absolute_only" in rule(skipped, "rollback").reason
    full = evaluate("p", stage(on_rollback="full"), worse, holder, DIRECTION, rollback=True)
    assert not full.passed


def test_data_contract_and_lock_facts() -> None:
    cand = replace(bundle(), validation=None, lock_up_to_date=False, lock_detail="out of date: x")
    verdict = evaluate("p", stage(), cand, None, DIRECTION)
    assert not rule(verdict, "data_contract").passed
    assert rule(verdict, "dvc_lock").reason == "dvc.lock: out of date: x"
    unknown = replace(bundle(), lock_up_to_date=None, lock_detail="")
    assert not rule(evaluate("p", stage(), unknown, None, DIRECTION), "dvc_lock").passed


def test_a_policy_without_rules_does_not_pass() -> None:
    empty = stage(
        require_data_contract=False,
        require_lock_up_to_date=False,
        absolute=[],
        vs_holder=[],
        slices={"min_size": 1, "rules": []},
        fairness=[],
        benchmark=[],
        on_first_model="absolute_only",
    )
    verdict = evaluate("p", empty, bundle(), bundle("h"), DIRECTION)
    assert verdict.rules == ()
    assert not verdict.passed


def test_json_and_markdown_rendering() -> None:
    verdict = evaluate("production", stage(), bundle(roc_auc=0.7), None, DIRECTION)
    payload = json.loads(render([verdict], "json"))
    assert payload == verdict_json(verdict)
    assert set(payload) == {"stage", "passed", "candidate", "holder", "rules"}
    assert payload["passed"] is False
    assert payload["holder"] is None
    assert {"rule", "passed", "reason"} == set(payload["rules"][0])
    md = render([verdict], "md")
    assert "❌ failed" in md
    assert "`absolute:roc_auc`" in md
    assert "0.7" in md


@pytest.mark.parametrize("root", [REPO_ROOT, DEMO_ROOT], ids=["live", "demo"])
def test_shipped_policy_is_valid_and_fully_commented(root: Path) -> None:
    path = root / "policies" / "promotion.yaml"
    policy = load_policy(path)
    assert {"staging", "production"} <= set(policy.stages)
    for line in path.read_text().splitlines():
        stripped = line.strip()
        key_line = stripped and not stripped.startswith("#") and ":" in stripped.split("#")[0]
        if key_line and not stripped.startswith("justification"):
            assert "#" in line, f"uncommented key: {line!r}"


def write_policy(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "promotion.yaml"
    path.write_text(text)
    return path


def test_schema_requires_justification_and_rejects_unknown_keys(tmp_path: Path) -> None:
    shipped = (DEMO_ROOT / "policies" / "promotion.yaml").read_text()  # edited by exact text
    no_justification = "\n".join(
        line for line in shipped.splitlines() if "justification:" not in line
    )
    with pytest.raises(ConfigError) as info:
        load_policy(write_policy(tmp_path, no_justification))
    assert "'justification' is a required property" in str(info.value)
    typo = shipped.replace("on_first_model: absolute_only", "on_first_modle: absolute_only", 1)
    with pytest.raises(ConfigError) as info:
        load_policy(write_policy(tmp_path, typo))
    assert "on_first_modle" in str(info.value)
    assert "'on_first_model' is a required property" in str(info.value)


def test_schema_rejects_nan_threshold(tmp_path: Path) -> None:
    shipped = (DEMO_ROOT / "policies" / "promotion.yaml").read_text()  # edited by exact text
    with pytest.raises(ConfigError) as info:
        load_policy(write_policy(tmp_path, shipped.replace("min: 0.75", "min: .nan", 1)))
    assert "not a finite number" in str(info.value)


def md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def test_lock_consistency_at_a_revision(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "params.yaml").write_text("train:\n  seed: 42\n")
    (repo / "metrics.json").write_text('{"roc_auc": 0.8}\n')
    lock = (
        "schema: '2.0'\nstages:\n  train:\n    cmd: x\n    params:\n      params.yaml:\n"
        "        train.seed: 42\n    outs:\n    - path: metrics.json\n"
        f"      md5: {md5(chr(123) + chr(34) + 'roc_auc' + chr(34) + ': 0.8}' + chr(10))}\n"
        "    - path: model.bin\n      md5: 0123456789abcdef0123456789abcdef\n"
    )
    (repo / "dvc.lock").write_text(lock)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "locked")
    ok, detail = lock_consistent_at_rev(repo, "HEAD")
    assert ok, detail
    (repo / "params.yaml").write_text("train:\n  seed: 43\n")
    (repo / "metrics.json").write_text('{"roc_auc": 0.9}\n')
    git(repo, "commit", "-q", "-am", "edited without repro")
    ok, detail = lock_consistent_at_rev(repo, "HEAD")
    assert not ok
    assert "metrics.json changed" in detail
    assert "param train.seed changed" in detail
    assert lock_consistent_at_rev(repo, "HEAD~1")[0]
