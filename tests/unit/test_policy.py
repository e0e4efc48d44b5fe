"""Promotion policy: pure evaluation (fails closed), the shipped file, lock facts from git."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pipeline import config
from pipeline.config import build
from pipeline.errors import ConfigError
from pipeline.metrics import DIRECTION, RANGE
from pipeline.policy import (
    Bundle,
    StagePolicy,
    evaluate,
    load_policy,
    lock_consistent_at_rev,
    model_bytes,
    render,
    verdict_json,
)
from pipeline.schemas import metric_ranges
from tests.conftest import DEMO_ROOT, REPO_ROOT, git

STAGE: dict[str, Any] = {
    "on_first_model": "absolute_only",
    "on_rollback": "absolute_only",
    "require_data_contract": True,
    "require_lock_up_to_date": True,
    "require_verified_model": True,
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
        model_bytes=True,
        model_detail="models/model.skops matches md5 0123",
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
        require_verified_model=False,
        absolute=[],
        vs_holder=[],
        slices={"min_size": 1, "rules": []},
        fairness=[],
        benchmark=[],
        on_first_model="absolute_only",
    )
    verdict = evaluate("p", empty, bundle(), bundle("h"), DIRECTION)
    # the model bytes are reported even when not required, but as a notice, not as a check
    assert [(r.rule, r.notice) for r in verdict.rules] == [("model_bytes", True)]
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


def test_model_bytes_rule_fails_closed_unless_the_policy_opts_out() -> None:
    absent = replace(bundle(), model_bytes=None, model_detail="x is not in the DVC cache")
    tampered = replace(bundle(), model_bytes=False, model_detail="x: md5 a does not match b")
    required, optional = stage(), stage(require_verified_model=False)
    assert rule(evaluate("p", required, bundle(), None, DIRECTION), "model_bytes").passed
    missing = evaluate("p", required, absent, None, DIRECTION)
    assert not missing.passed
    assert "model_bytes: x is not in the DVC cache" in missing.failures
    # a mismatch is tampering or a corrupt cache: no policy setting lets it through
    assert not evaluate("p", optional, tampered, None, DIRECTION).passed
    opted = evaluate("p", optional, absent, None, DIRECTION)
    assert opted.passed
    assert rule(opted, "model_bytes").notice
    assert "| ⚠️ | `model_bytes` | ⚠️ NOT VERIFIED: x is not in the DVC cache" in render(
        [opted], "md"
    )


def test_model_bytes_checks_the_file_then_the_dvc_cache(tmp_path: Path) -> None:
    data = b"model bytes"
    digest = md5(data.decode())
    model = tmp_path / "models" / "model.skops"
    model.parent.mkdir()
    status, detail, _ = model_bytes(tmp_path, digest, "models/model.skops", [model], "HEAD")
    assert status is None
    assert "is not in the DVC cache" in detail
    assert "require_verified_model: false" in detail
    cached = tmp_path / ".dvc/cache/files/md5" / digest[:2] / digest[2:]
    cached.parent.mkdir(parents=True)
    cached.write_bytes(data)
    assert model_bytes(tmp_path, digest, "m", [model], "HEAD")[::2] == (True, cached)
    model.write_bytes(b"edited by hand")  # a present candidate is the one judged
    status, detail, checked = model_bytes(tmp_path, digest, "m", [model], "HEAD")
    assert (status, checked) == (False, model)
    assert f"does not match {digest}, the md5 dvc.lock at HEAD pins for m" in detail
    assert model_bytes(tmp_path, None, "m", [model], "v1")[:2] == (
        False,
        "dvc.lock at v1 pins no m",
    )


def test_metric_ranges_cover_every_metric_and_the_schema_is_generated_from_them() -> None:
    assert set(RANGE) == set(DIRECTION)
    committed = config.schema("promotion")["$defs"]["metric_ranges"]["allOf"]
    expected = metric_ranges(RANGE)["allOf"]
    assert committed == expected, (
        "pipeline/schemas/promotion.schema.json $defs.metric_ranges is stale; replace its allOf "
        "with pipeline.schemas.metric_ranges(pipeline.metrics.RANGE)['allOf']"
    )


@pytest.mark.parametrize(
    ("shipped", "edited", "where", "message"),
    [
        ("min: 0.75", "min: 1.5", "stages.production.absolute[0].min", "1.5 is greater than"),
        ("min: 0.65", "min: -0.2", "stages.production.slices.rules[0].min", "-0.2 is less than"),
        ("max: 0.10", "max: 10", "stages.production.fairness[0].max", "10 is greater than"),
        ("abs_tolerance: 0.005", "abs_tolerance: 2", "vs_holder[0].abs_tolerance", "2 is greater"),
        ("max: 300", "max: -1", "stages.production.benchmark[0].max", "-1 is less than"),
    ],
)
def test_thresholds_outside_a_metrics_range_are_schema_errors(
    tmp_path: Path, shipped: str, edited: str, where: str, message: str
) -> None:
    text = (DEMO_ROOT / "policies" / "promotion.yaml").read_text()
    production = text.index("  production:")
    bad = text[:production] + text[production:].replace(shipped, edited, 1)
    assert bad != text
    with pytest.raises(ConfigError) as info:
        load_policy(write_policy(tmp_path, bad))
    assert where in str(info.value)
    assert message in str(info.value)
    # in range, the same keys load: the bound is the metric's range, not a blanket limit
    load_policy(write_policy(tmp_path, text))


def test_unbounded_side_of_a_range_stays_open(tmp_path: Path) -> None:
    text = (DEMO_ROOT / "policies" / "promotion.yaml").read_text()
    # r2 may be any negative number; a latency budget any large one
    r2 = text.replace(
        "metric: roc_auc # area under the ROC curve\n        min: 0.75",
        "metric: r2 # fit\n        min: -5",
        1,
    )
    assert r2 != text
    assert load_policy(write_policy(tmp_path, r2.replace("max: 300", "max: 1000000", 1)))
