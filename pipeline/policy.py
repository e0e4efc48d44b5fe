"""Promotion policy: (stage policy, candidate, holder) -> verdict, one result per rule.

`evaluate` is pure and fails CLOSED: a NaN, an infinite or a missing value is a failed rule,
never a pass (NaN compares False both ways, so every comparison here is written as "pass only
if provably inside the bound"). What happens without a holder (the first model of a stage) or
on a rollback is stated in the policy file, never implied.

The edge functions at the bottom read bundles from the working tree or from a git revision
(`git show <rev>:<path>`) and resolve the holder of a stage from the GTO tags (pipeline.registry).
"""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pipeline.config import Params, build, frozen, load_document, parse_yaml, violations
from pipeline.errors import ConfigError, InputError

Direction = Literal["higher", "lower"]

# --------------------------------------------------------------------------- policy file


@frozen
class Bound:
    metric: str
    min: float | None = None
    max: float | None = None


@frozen
class FairnessBound:
    metric: str
    justification: str
    min: float | None = None
    max: float | None = None


@frozen
class Change:
    metric: str
    abs_tolerance: float | None = None
    rel_tolerance: float | None = None


@frozen
class SliceRule:
    metric: str
    columns: tuple[str, ...]
    min: float | None = None
    max: float | None = None


@frozen
class SlicePolicy:
    min_size: int
    rules: tuple[SliceRule, ...]


@frozen
class StagePolicy:
    on_first_model: Literal["absolute_only", "fail"]
    on_rollback: Literal["absolute_only", "full"]
    require_data_contract: bool
    require_lock_up_to_date: bool
    require_verified_model: bool
    absolute: tuple[Bound, ...]
    vs_holder: tuple[Change, ...]
    slices: SlicePolicy
    fairness: tuple[FairnessBound, ...]
    benchmark: tuple[Bound, ...]


@frozen
class Policy:
    stages: Mapping[str, StagePolicy]


def load_policy(path: str | Path) -> Policy:
    """policies/promotion.yaml, validated against its schema, as a frozen Policy."""
    return build(Policy, load_document(path, "promotion"))


def load_policy_at(repo: Path, rev: str, path: str) -> Policy:
    """The policy as committed at `rev`: a promotion PR is judged by the base branch's rules,
    not by rules the same PR may have relaxed."""
    text = git_show(repo, rev, path)
    if text is None:
        raise ConfigError([f"{rev}:{path}: file not found"])
    name = f"{rev}:{path}"
    doc = parse_yaml(text, name)
    problems = violations(doc, "promotion", name)
    if problems:
        raise ConfigError(problems)
    return build(Policy, doc)


def stage_policy(policy: Policy, stage: str) -> StagePolicy:
    if stage not in policy.stages:
        known = ", ".join(sorted(policy.stages))
        raise ConfigError([f"promotion policy has no stage {stage!r} (stages: {known})"])
    return policy.stages[stage]


# --------------------------------------------------------------------------- inputs / outputs


@dataclass(frozen=True)
class Bundle:
    """Everything the policy looks at for one model version; None = file absent."""

    ref: str  # "workspace", a tag or a commit
    version: str | None = None
    commit: str | None = None
    metrics: Mapping[str, Any] | None = None
    slices: Mapping[str, Any] | None = None
    fairness: Mapping[str, Any] | None = None
    benchmark: Mapping[str, Any] | None = None
    validation: Mapping[str, Any] | None = None
    lock_up_to_date: bool | None = None  # computed at the edge (dvc status / lock hashes)
    lock_detail: str = ""
    # The model file's bytes against the md5 dvc.lock pins (computed at the edge): True match,
    # False mismatch, None not checkable (bytes absent); the detail says where it looked.
    model_bytes: bool | None = None
    model_detail: str = ""

    def summary(self) -> dict[str, Any]:
        return {"ref": self.ref, "version": self.version, "commit": self.commit}


@dataclass(frozen=True)
class RuleResult:
    rule: str
    passed: bool
    reason: str
    notice: bool = False  # passed only because the policy opts out: checks nothing


@dataclass(frozen=True)
class Verdict:
    stage: str
    candidate: Mapping[str, Any]
    holder: Mapping[str, Any] | None
    rules: tuple[RuleResult, ...] = field(default_factory=tuple)

    @property
    def passed(self) -> bool:
        # No rules at all is not a pass: a policy that checks nothing must say so.
        checked = [r for r in self.rules if not r.notice]
        return bool(checked) and all(r.passed for r in self.rules)

    @property
    def failures(self) -> list[str]:
        return [f"{r.rule}: {r.reason}" for r in self.rules if not r.passed]


# --------------------------------------------------------------------------- pure evaluation


def _number(value: Any) -> float | None:
    """A finite float, or None for anything else (missing, NaN, inf, bool, string)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def _describe_bad(raw: Any, what: str) -> str:
    if raw is None:
        return f"{what} is missing (fails closed)"
    return f"{what} is {raw!r}, not a finite number (fails closed)"


def _bound(name: str, raw: Any, lo: float | None, hi: float | None, what: str) -> RuleResult:
    value = _number(raw)
    if value is None:
        return RuleResult(name, False, _describe_bad(raw, what))
    parts = []
    passed = True
    if lo is not None:
        ok = value >= lo
        passed = passed and ok
        parts.append(f"min {_fmt(lo)} (delta {value - lo:+.6g})")
    if hi is not None:
        ok = value <= hi
        passed = passed and ok
        parts.append(f"max {_fmt(hi)} (delta {value - hi:+.6g})")
    verb = "within" if passed else "outside"
    return RuleResult(name, passed, f"{what} = {_fmt(value)} {verb} {' and '.join(parts)}")


def _get(mapping: Mapping[str, Any] | None, key: str) -> Any:
    return mapping.get(key) if isinstance(mapping, Mapping) else None


def _change(
    rule: Change, candidate: Bundle, holder: Bundle, directions: Mapping[str, str]
) -> RuleResult:
    name = f"vs_holder:{rule.metric}"
    direction = directions.get(rule.metric)
    if direction not in ("higher", "lower"):
        return RuleResult(name, False, f"{rule.metric}: direction unknown (fails closed)")
    raw_c, raw_h = _get(candidate.metrics, rule.metric), _get(holder.metrics, rule.metric)
    cand, held = _number(raw_c), _number(raw_h)
    if cand is None:
        return RuleResult(name, False, _describe_bad(raw_c, f"candidate {rule.metric}"))
    if held is None:
        return RuleResult(name, False, _describe_bad(raw_h, f"holder {rule.metric}"))
    delta = cand - held
    # How much worse the candidate is, in the metric's own direction (negative = better).
    worse = -delta if direction == "higher" else delta
    checks = []
    passed = True
    if rule.abs_tolerance is not None:
        ok = worse <= rule.abs_tolerance
        passed = passed and ok
        checks.append(f"abs tolerance {_fmt(rule.abs_tolerance)}")
    if rule.rel_tolerance is not None:
        allowed = rule.rel_tolerance * abs(held)
        ok = worse <= allowed
        passed = passed and ok
        checks.append(f"rel tolerance {_fmt(rule.rel_tolerance)} (= {_fmt(allowed)})")
    rel = f", {delta / abs(held):+.3%}" if held != 0 else ""
    verb = "within" if passed else "exceeds"
    return RuleResult(
        name,
        passed,
        f"{rule.metric} ({direction} is better): candidate {_fmt(cand)} vs holder {_fmt(held)}, "
        f"delta {delta:+.6g}{rel}; worsening {_fmt(max(worse, 0.0))} {verb} "
        + " and ".join(checks),
    )


def _model_bytes_rule(required: bool, candidate: Bundle) -> RuleResult:
    """Bytes that differ from dvc.lock always fail (tampering or a corrupt cache); bytes that
    cannot be found fail unless the policy opts out, and then the pass says so loudly. Without
    the requirement the rule is a notice: it does not count as a check the policy makes."""
    detail = candidate.model_detail or "model bytes not checked"
    if candidate.model_bytes is False:
        return RuleResult("model_bytes", False, detail)
    if required:
        return RuleResult("model_bytes", candidate.model_bytes is True, detail)
    if candidate.model_bytes is True:
        return RuleResult("model_bytes", True, detail, notice=True)
    return RuleResult(
        "model_bytes",
        True,
        f"⚠️ NOT VERIFIED: {detail}; passed only because require_verified_model is false",
        notice=True,
    )


def _slice_results(policy: SlicePolicy, slices: Mapping[str, Any] | None) -> list[RuleResult]:
    results = []
    for rule in policy.rules:
        for column in rule.columns:
            name = f"slice:{column}:{rule.metric}"
            values = _get(slices, column)
            if not isinstance(values, Mapping) or not values:
                results.append(RuleResult(name, False, f"no slices for column {column!r}"))
                continue
            checked = skipped = 0
            for value, entry in sorted(values.items()):
                n = _get(entry, "n")
                if not isinstance(n, int) or isinstance(n, bool):
                    results.append(RuleResult(f"{name}={value}", False, "slice size missing"))
                    continue
                if n < policy.min_size:
                    skipped += 1
                    continue
                checked += 1
                raw = _get(_get(entry, "metrics"), rule.metric)
                what = f"{column}={value} (n={n}) {rule.metric}"
                result = _bound(f"{name}={value}", raw, rule.min, rule.max, what)
                results.append(result)
            if checked == 0:
                results.append(
                    RuleResult(name, False, f"no slice of {column!r} has n >= {policy.min_size}")
                )
            elif skipped:
                results.append(
                    RuleResult(
                        f"{name}:small",
                        True,
                        f"{skipped} slice(s) of {column!r} below min size {policy.min_size}"
                        " not judged",
                    )
                )
    return results


def evaluate(
    stage: str,
    policy: StagePolicy,
    candidate: Bundle,
    holder: Bundle | None,
    directions: Mapping[str, str],
    *,
    rollback: bool = False,
) -> Verdict:
    """Judge `candidate` for `stage` against its current `holder` (None for the first model)."""
    rules: list[RuleResult] = []
    if policy.require_data_contract:
        passed = _get(candidate.validation, "passed") is True
        reason = (
            "data contract passed (validation.json)"
            if passed
            else "validation.json missing or not passed"
        )
        rules.append(RuleResult("data_contract", passed, reason))
    if policy.require_lock_up_to_date:
        ok = candidate.lock_up_to_date is True
        detail = candidate.lock_detail or ("up to date" if ok else "not known to be up to date")
        rules.append(RuleResult("dvc_lock", ok, f"dvc.lock: {detail}"))
    rules.append(_model_bytes_rule(policy.require_verified_model, candidate))
    for bound in policy.absolute:
        raw = _get(candidate.metrics, bound.metric)
        rules.append(_bound(f"absolute:{bound.metric}", raw, bound.min, bound.max, bound.metric))
    for fair in policy.fairness:
        raw = _get(_get(candidate.fairness, "metrics"), fair.metric)
        result = _bound(f"fairness:{fair.metric}", raw, fair.min, fair.max, fair.metric)
        rules.append(
            RuleResult(result.rule, result.passed, f"{result.reason} ({fair.justification})")
        )
    for bound in policy.benchmark:
        raw = _get(candidate.benchmark, bound.metric)
        rules.append(_bound(f"benchmark:{bound.metric}", raw, bound.min, bound.max, bound.metric))
    rules.extend(_slice_results(policy.slices, candidate.slices))
    if holder is None:
        if policy.on_first_model == "fail":
            rules.append(
                RuleResult("first_model", False, "stage has no holder and on_first_model is fail")
            )
        else:
            rules.append(
                RuleResult(
                    "first_model",
                    True,
                    "stage has no holder: on_first_model is absolute_only, change rules skipped",
                )
            )
    elif rollback and policy.on_rollback == "absolute_only":
        rules.append(
            RuleResult(
                "rollback",
                True,
                f"{candidate.version} held this stage before: on_rollback is absolute_only, "
                "change rules skipped",
            )
        )
    else:
        rules.extend(_change(change, candidate, holder, directions) for change in policy.vs_holder)
    return Verdict(
        stage=stage,
        candidate=candidate.summary(),
        holder=holder.summary() if holder else None,
        rules=tuple(rules),
    )


def verdict_json(verdict: Verdict) -> dict[str, Any]:
    return {
        "stage": verdict.stage,
        "passed": verdict.passed,
        "candidate": dict(verdict.candidate),
        "holder": dict(verdict.holder) if verdict.holder else None,
        "rules": [{"rule": r.rule, "passed": r.passed, "reason": r.reason} for r in verdict.rules],
    }


def _label(summary: Mapping[str, Any] | None) -> str:
    if not summary:
        return "none (first model)"
    return str(summary.get("version") or summary.get("ref"))


def verdict_markdown(verdict: Verdict) -> str:
    status = "✅ passed" if verdict.passed else "❌ failed"
    lines = [
        f"### Promotion policy `{verdict.stage}`: {status}",
        "",
        f"Candidate: `{_label(verdict.candidate)}` · holder: `{_label(verdict.holder)}`",
        "",
        "| | rule | reason |",
        "|---|---|---|",
    ]
    for r in verdict.rules:
        reason = r.reason.replace("|", "\\|")
        mark = "⚠️" if r.notice else ("✅" if r.passed else "❌")
        lines.append(f"| {mark} | `{r.rule}` | {reason} |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- edge: bundles


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=False, timeout=120
    )


def git_show(repo: Path, rev: str, path: str) -> str | None:
    """A file's text at a revision, or None when the file is absent there."""
    proc = _git(repo, "show", f"{rev}:{path}")
    return proc.stdout if proc.returncode == 0 else None


def md5_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def locked_md5(lock_text: str | None, where: str, path: str) -> str | None:
    """The md5 a dvc.lock text pins for output `path` (None without a lock or that output)."""
    from pipeline.report import lock_outputs  # the one reader of dvc.lock outputs

    lock = parse_yaml(lock_text, where) if lock_text else None
    _, md5 = lock_outputs(lock if isinstance(lock, Mapping) else None).get(path, ("", ""))
    return md5 or None


def model_bytes(
    root: Path, expected: str | None, path: str, candidates: Sequence[Path], where: str
) -> tuple[bool | None, str, Path | None]:
    """Check the first present candidate file against `expected`, the md5 dvc.lock at `where`
    pins for `path`; the DVC cache entry of that md5 is always the last candidate.
    Returns (True match / False mismatch / None absent, why, the file checked)."""
    if not expected:
        return False, f"dvc.lock at {where} pins no {path}", None
    cached = root / ".dvc" / "cache" / "files" / "md5" / expected[:2] / expected[2:]
    for candidate in [*candidates, cached]:
        if candidate.is_file():
            actual = md5_file(candidate)
            if actual != expected:
                return (
                    False,
                    f"{candidate}: md5 {actual} does not match {expected}, "
                    f"the md5 dvc.lock at {where} pins for {path}",
                    candidate,
                )
            return True, f"{path} matches md5 {expected} pinned by dvc.lock at {where}", candidate
    return (
        None,
        f"{path} (md5 {expected}, dvc.lock at {where}) is not in the DVC cache: "
        "fetch it from the DVC remote (`dvc fetch`), or for a repository without a remote set "
        "require_verified_model: false in the promotion policy",
        None,
    )


def _json_or_none(text: str | None, where: str) -> Mapping[str, Any] | None:
    if text is None:
        return None
    try:
        # json accepts NaN/Infinity tokens; they stay floats and the rules fail closed on them.
        loaded = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: not valid JSON: {exc}") from exc
    return loaded if isinstance(loaded, Mapping) else None


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _lookup(doc: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(doc, Mapping) or part not in doc:
            return _MISSING
        doc = doc[part]
    return doc


_MISSING = object()


def lock_consistent_at_rev(repo: Path, rev: str) -> tuple[bool, str]:
    """dvc.lock at `rev` agrees with the git-tracked files and params at `rev`.

    A revision cannot be `dvc status`-ed without checking it out; instead every dependency or
    output the lock lists that git holds at `rev` must have the md5 the lock records, every
    tracked param must have the locked value, and every dvc.yaml stage must be locked.
    """
    lock_text, dag_text = git_show(repo, rev, "dvc.lock"), git_show(repo, rev, "dvc.yaml")
    if lock_text is None:
        return False, f"no dvc.lock at {rev}"
    lock = parse_yaml(lock_text, f"{rev}:dvc.lock")
    stages = lock.get("stages", {}) if isinstance(lock, Mapping) else {}
    problems: list[str] = []
    if dag_text is not None:
        dag = parse_yaml(dag_text, f"{rev}:dvc.yaml")
        missing = sorted(set(dag.get("stages", {})) - set(stages))
        problems += [f"stage {s} not in dvc.lock" for s in missing]
    checked = 0
    for stage, entry in sorted(stages.items()):
        for kind in ("deps", "outs"):
            for item in entry.get(kind, []) or []:
                path, md5 = item.get("path"), item.get("md5")
                if not path or not md5 or str(md5).endswith(".dir"):
                    continue
                blob = _git_bytes(repo, rev, path)
                if blob is None:
                    continue  # DVC-cached, not in git: cannot be checked without the data
                checked += 1
                if _md5(blob) != md5:
                    problems.append(f"{stage}: {path} changed since dvc.lock was written")
        for file, values in (entry.get("params") or {}).items():
            text = git_show(repo, rev, file)
            current = parse_yaml(text, f"{rev}:{file}") if text is not None else {}
            for key, value in sorted(values.items()):
                checked += 1
                if _lookup(current, key) != value:
                    problems.append(f"{stage}: param {key} changed since dvc.lock was written")
    if problems:
        return False, "; ".join(problems)
    return True, f"consistent at {rev} ({checked} git-tracked hashes/params checked)"


def _git_bytes(repo: Path, rev: str, path: str) -> bytes | None:
    proc = subprocess.run(
        ["git", "show", f"{rev}:{path}"], cwd=repo, capture_output=True, check=False, timeout=120
    )
    return proc.stdout if proc.returncode == 0 else None


def workspace_lock_up_to_date(repo: Path) -> tuple[bool, str]:
    """The workspace's dvc.lock is current (`dvc status`) and is the committed one (HEAD's),
    as the PR report and its required check judge it."""
    from pipeline.report import stale_stages  # report needs no policy: no cycle

    stale = stale_stages(repo)
    if stale is None:
        return False, "dvc status failed"
    if stale:
        return False, "out of date: " + ", ".join(stale)
    return True, "up to date (`dvc status` is clean and the committed lock matches)"


def _files(params: Params) -> dict[str, str]:
    p = params.paths
    return {
        "metrics": p.metrics,
        "slices": p.slices,
        "fairness": p.fairness,
        "benchmark": p.benchmark,
        "validation": p.validation,
    }


def _bundle(
    docs: Mapping[str, Mapping[str, Any] | None],
    *,
    ref: str,
    lock_up_to_date: bool,
    lock_detail: str,
    model: tuple[bool | None, str, Path | None],
    version: str | None = None,
    commit: str | None = None,
) -> Bundle:
    return Bundle(
        ref=ref,
        version=version,
        commit=commit,
        metrics=docs["metrics"],
        slices=docs["slices"],
        fairness=docs["fairness"],
        benchmark=docs["benchmark"],
        validation=docs["validation"],
        lock_up_to_date=lock_up_to_date,
        lock_detail=lock_detail,
        model_bytes=model[0],
        model_detail=model[1],
    )


def workspace_bundle(params: Params, repo: Path, *, check_lock: bool = True) -> Bundle:
    """The candidate as the working tree holds it (what a PR's CI just reproduced)."""
    docs: dict[str, Mapping[str, Any] | None] = {}
    for key, rel in _files(params).items():
        path = repo / rel
        docs[key] = _json_or_none(path.read_text("utf-8") if path.is_file() else None, rel)
    ok, detail = workspace_lock_up_to_date(repo) if check_lock else (False, "not checked")
    lock = repo / "dvc.lock"
    expected = locked_md5(
        lock.read_text("utf-8") if lock.is_file() else None, "dvc.lock", params.paths.model
    )
    model = model_bytes(
        repo, expected, params.paths.model, [repo / params.paths.model], "the working tree"
    )
    return _bundle(docs, ref="workspace", lock_up_to_date=ok, lock_detail=detail, model=model)


def rev_bundle(
    params: Params,
    repo: Path,
    rev: str,
    *,
    version: str | None = None,
    artifact: Path | None = None,
) -> Bundle:
    """A version as git holds it at `rev` (a tag or commit): `git show <rev>:<path>`; its model
    bytes are checked in `artifact` when given, else in the DVC cache."""
    if not rev or rev.startswith("-") or any(c.isspace() for c in rev):
        raise InputError(f"{rev!r}: not a git revision")
    proc = _git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    if proc.returncode != 0:
        raise InputError(f"{rev}: not a git revision")
    commit = proc.stdout.strip()
    docs = {
        key: _json_or_none(git_show(repo, commit, rel), f"{rev}:{rel}")
        for key, rel in _files(params).items()
    }
    ok, detail = lock_consistent_at_rev(repo, commit)
    expected = locked_md5(git_show(repo, commit, "dvc.lock"), f"{rev}:dvc.lock", params.paths.model)
    model = model_bytes(repo, expected, params.paths.model, [artifact] if artifact else [], rev)
    return _bundle(
        docs,
        ref=rev,
        version=version,
        commit=commit,
        lock_up_to_date=ok,
        lock_detail=detail,
        model=model,
    )


def directions() -> Mapping[str, str]:
    from pipeline.metrics import DIRECTION

    return DIRECTION


def check(
    params: Params, stage: str, candidate: str = "workspace", *, repo: Path | None = None
) -> Verdict:
    """`policy check`: the candidate against the stage's policy and the stage's current holder."""
    from pipeline import registry

    root = repo or Path.cwd()
    policy = stage_policy(load_policy(root / params.paths.promotion), stage)
    state = registry.read_state(root, params.project.model)
    holder_version = state.holder(stage)
    holder = (
        rev_bundle(params, root, state.versions[holder_version].tag, version=holder_version)
        if holder_version
        else None
    )
    if candidate == "workspace":
        cand = workspace_bundle(params, root)
    else:
        version = state.version_of_ref(root, candidate)
        cand = rev_bundle(params, root, candidate, version=version)
    rollback = cand.version is not None and cand.version in state.previous_holders(stage)
    return evaluate(stage, policy, cand, holder, directions(), rollback=rollback)


def render(verdicts: Sequence[Verdict], fmt: str) -> str:
    if fmt == "json":
        payload: Any = (
            verdict_json(verdicts[0]) if len(verdicts) == 1 else [verdict_json(v) for v in verdicts]
        )
        return json.dumps(payload, indent=2, sort_keys=True) + "\n"
    return "\n".join(verdict_markdown(v) for v in verdicts)
