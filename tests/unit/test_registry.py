"""The git model registry with real git repositories and the real `gto` reading the result.

Versions are fabricated quickly: each commit writes the metrics files and a dvc.lock whose
hashes match them (the model itself is DVC-cached, so only its md5 is in git).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import Params, load_params
from pipeline.errors import CheckFailed, ConfigError, InputError, UsageError
from pipeline.registry import (
    audit,
    load_desired,
    promote,
    read_state,
    reconcile,
    register,
    render_audit,
    render_reconcile,
    rollback,
    validate_model,
    validate_stage,
    validate_version,
)
from tests.conftest import DEMO_ROOT, clean_env, git, run

MODEL = "credit-default"
GOOD: dict[str, float] = {
    "accuracy": 0.81,
    "roc_auc": 0.84,
    "f1": 0.42,
    "precision": 0.6,
    "recall": 0.33,
    "log_loss": 0.42,
}


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


def make_registry_repo(dest: Path) -> Path:
    dest.mkdir(parents=True)
    for rel in ("params.yaml", "policies/promotion.yaml", "models/registry.yaml"):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(DEMO_ROOT / rel, dest / rel)  # the demo's model name and policy
    git(dest, "init", "-q", "-b", "main")
    git(dest, "config", "user.name", "Test Author")
    git(dest, "config", "user.email", "author@example.com")
    git(dest, "config", "commit.gpgsign", "false")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "template")
    return dest


def commit_version(
    repo: Path, model: bytes, *, cache: bool = False, **metrics: float
) -> tuple[str, str]:
    """Commit the outputs of a (fabricated) pipeline run; returns (commit, model md5)."""
    files = {
        "models/metrics.json": dump({**GOOD, **metrics}),
        "models/slices.json": dump(
            {
                col: {val: {"n": 300, "metrics": {"roc_auc": 0.8, "accuracy": 0.8}} for val in vals}
                for col, vals in {
                    "region": ["north", "south"],
                    "employment": ["salaried", "retired"],
                }.items()
            }
        ),
        "models/fairness.json": dump(
            {
                "sensitive": "sex",
                "metrics": {
                    "demographic_parity_difference": 0.03,
                    "equalized_odds_difference": 0.05,
                },
                "groups": {},
            }
        ),
        "models/benchmark.json": dump({"latency_ms_single_p95": 2.5, "model_size_bytes": 9000}),
        "models/validation.json": dump({"passed": True, "rows": 3000, "columns": 13, "checks": 9}),
    }
    for rel, text in files.items():
        (repo / rel).write_text(text)
    model_md5 = md5(model)
    outs = "".join(
        f"    - path: {rel}\n      md5: {md5(text.encode())}\n" for rel, text in files.items()
    )
    lock = (
        "schema: '2.0'\nstages:\n"
        "  ingest:\n    cmd: python -m pipeline ingest\n    outs:\n"
        f"    - path: data/raw/dataset.parquet\n      md5: {md5(b'raw' + model)}\n"
        "  train:\n    cmd: python -m pipeline train\n    outs:\n"
        f"    - path: models/model.skops\n      md5: {model_md5}\n"
        "  evaluate:\n    cmd: python -m pipeline evaluate\n    outs:\n" + outs
    )
    (repo / "dvc.lock").write_text(lock)
    if cache:
        entry = repo / ".dvc" / "cache" / "files" / "md5" / model_md5[:2] / model_md5[2:]
        entry.parent.mkdir(parents=True, exist_ok=True)
        entry.write_bytes(model)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", f"model {model_md5[:8]}")
    return git(repo, "rev-parse", "HEAD"), model_md5


def tags(repo: Path) -> list[str]:
    return sorted(git(repo, "tag", "--list").split())


def gto_state(repo: Path) -> dict[str, Any]:
    shown = json.loads(run(["gto", "show", "--json"], repo).stdout)
    return shown[MODEL]


def gto_stage(repo: Path, stage: str) -> str:
    return run(["gto", "show", f"{MODEL}#{stage}", "--version"], repo).stdout.strip()


def cli(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "pipeline", *args], repo, check=check)


def merge_registry_change(repo: Path, message: str) -> None:
    git(repo, "commit", "-q", "-am", message)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_registry_repo(tmp_path / "repo")


@pytest.fixture
def two_versions(repo: Path) -> Path:
    """v0.1.0 serving production, v0.2.0 (better) registered."""
    params = load_params(repo / "params.yaml")
    commit_version(repo, b"model-1", cache=True)
    assert register(params, repo).version == "v0.1.0"
    promote(params, repo, "v0.1.0", "production")
    merge_registry_change(repo, "promote v0.1.0")
    reconcile(params, repo, pr="1", approver="alice")
    commit_version(repo, b"model-2", cache=True, roc_auc=0.86)
    assert register(params, repo).version == "v0.2.0"
    return repo


def test_register_tags_a_version_only_when_the_model_changed(repo: Path) -> None:
    params = load_params(repo / "params.yaml")
    assert register(params, repo).tag is None  # no dvc.lock yet: nothing to register
    commit, model_md5 = commit_version(repo, b"model-1")
    first = register(params, repo)
    assert first.tag == f"{MODEL}@v0.1.0"
    assert git(repo, "rev-list", "-n1", first.tag) == commit
    record = json.loads(git(repo, "tag", "-l", "--format=%(contents)", first.tag))
    assert record["model_md5"] == model_md5
    assert record["commit"] == commit
    # same model on a later commit (e.g. a docs change): no new version
    (repo / "README.md").write_text("docs\n")
    git(repo, "add", "README.md")
    git(repo, "commit", "-q", "-m", "docs")
    again = register(params, repo)
    assert again.tag is None
    assert "unchanged since" in again.reason
    commit_version(repo, b"model-2")
    assert register(params, repo).tag == f"{MODEL}@v0.2.0"
    commit_version(repo, b"model-3")
    assert register(params, repo, part="major").tag == f"{MODEL}@v1.0.0"
    assert gto_state(repo)["version"] == "v1.0.0"
    versions = json.loads(run(["gto", "show", MODEL, "--json"], repo).stdout)
    assert {v["version"] for v in versions} == {"v0.1.0", "v0.2.0", "v1.0.0"}


def test_register_cli_reports_and_refuses_a_lower_version(repo: Path) -> None:
    commit_version(repo, b"model-1")
    assert "registered credit-default@v0.1.0" in cli(repo, "register").stdout
    commit_version(repo, b"model-2")
    proc = cli(repo, "register", "--version", "v0.0.9", check=False)
    assert proc.returncode == 2
    assert "not above the latest version v0.1.0" in proc.stderr
    assert tags(repo) == [f"{MODEL}@v0.1.0"]


def test_promote_to_staging_and_reconcile_with_audit(repo: Path) -> None:
    params = load_params(repo / "params.yaml")
    commit, model_md5 = commit_version(repo, b"model-1", cache=True)
    register(params, repo)
    proc = cli(repo, "promote", "v0.1.0", "--to", "staging")
    assert "Promote credit-default@v0.1.0 to staging" in proc.stdout
    assert "staging:\n    version: v0.1.0" in (repo / "models/registry.yaml").read_text()
    merge_registry_change(repo, "promote to staging")
    dry = render_reconcile(reconcile(params, repo, dry_run=True), "md")
    assert "assign** `staging` → `v0.1.0`" in dry
    assert "first model" in dry
    assert tags(repo) == [f"{MODEL}@v0.1.0"]  # a dry run tags nothing
    cli(repo, "reconcile", "--pr", "7", "--approver", "alice")
    assert tags(repo) == [f"{MODEL}#staging#1", f"{MODEL}@v0.1.0"]
    assert gto_stage(repo, "staging") == "v0.1.0"
    assert git(repo, "rev-list", "-n1", f"{MODEL}#staging#1") == commit
    (entry,) = json.loads(cli(repo, "audit", "--format", "json").stdout)
    record = entry["record"]
    assert entry["intact"] is True
    assert record["version"] == "v0.1.0"
    assert record["stage"] == "staging"
    assert record["pr"] == "7"
    assert record["approver"] == "alice"
    policy_sha = hashlib.sha256((repo / "policies/promotion.yaml").read_bytes()).hexdigest()
    assert record["policy"]["sha256"] == policy_sha
    assert record["metrics"]["roc_auc"] == GOOD["roc_auc"]
    assert record["data"]["data/raw/dataset.parquet"] == md5(b"raw" + b"model-1")
    assert record["model_artifact"] == {
        "path": "models/model.skops",
        "md5": model_md5,
        "verified": True,
        "artifact": str(repo / ".dvc/cache/files/md5" / model_md5[:2] / model_md5[2:]),
    }
    assert record["verdict"]["passed"] is True
    # in sync now: a second reconcile creates nothing
    assert "nothing to do" in render_reconcile(reconcile(params, repo), "md")
    assert len(tags(repo)) == 2


def test_promote_to_production_when_the_policy_passes(two_versions: Path) -> None:
    repo = two_versions
    params = load_params(repo / "params.yaml")
    promote(params, repo, "v0.2.0", "production")
    merge_registry_change(repo, "promote v0.2.0")
    check = cli(
        repo,
        "policy",
        "check",
        "--stage",
        "production",
        "--candidate",
        f"{MODEL}@v0.2.0",
        "--format",
        "json",
    )
    verdict = json.loads(check.stdout)
    assert verdict["passed"] is True
    assert verdict["holder"]["version"] == "v0.1.0"
    assert verdict["candidate"]["version"] == "v0.2.0"
    result = reconcile(params, repo, pr="2", approver="bob")
    assert result.tags == (f"{MODEL}#production#2",)
    assert gto_stage(repo, "production") == "v0.2.0"
    assert gto_state(repo)["stage"]["production"] == "v0.2.0"


def test_promotion_refused_with_reason_and_nothing_tagged(repo: Path) -> None:
    params = load_params(repo / "params.yaml")
    commit_version(repo, b"model-1", cache=True, roc_auc=0.84)
    register(params, repo)
    promote(params, repo, "v0.1.0", "production")
    merge_registry_change(repo, "promote v0.1.0")
    reconcile(params, repo)
    commit_version(repo, b"model-2", cache=True, roc_auc=0.83)  # 0.01 worse: beyond 0.005
    register(params, repo)
    promote(params, repo, "v0.2.0", "production")
    merge_registry_change(repo, "promote v0.2.0")
    before = tags(repo)
    with pytest.raises(CheckFailed) as info:
        reconcile(params, repo)
    assert "vs_holder:roc_auc" in str(info.value)
    assert "candidate 0.83 vs holder 0.84" in str(info.value)
    assert "abs tolerance 0.005" in str(info.value)
    assert tags(repo) == before
    proc = cli(repo, "reconcile", check=False)
    assert proc.returncode == 1
    assert "promotion refused by policy; no tag created" in proc.stderr
    check = cli(
        repo, "policy", "check", "--stage", "production", "--candidate", "HEAD", check=False
    )
    assert check.returncode == 1
    assert "❌ | `vs_holder:roc_auc`" in check.stdout
    assert tags(repo) == before
    assert gto_stage(repo, "production") == "v0.1.0"


def recording_gh(bin_dir: Path, record: Path) -> None:
    """A `gh` that records its argv as a JSON line. `gh pr create` is a person's command (their
    own gh login, GraphQL): what this test owns is the call, not GitHub's answer to it."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "gh"
    script.write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"open({str(record)!r}, 'a').write(json.dumps({{'argv': sys.argv[1:]}}) + '\\n')\n"
        "print('https://github.com/example-org/example-repo/pull/1')\n"
    )
    script.chmod(0o755)


def read_record(record: Path) -> list[dict[str, Any]]:
    if not record.exists():
        return []
    return [json.loads(line) for line in record.read_text().splitlines() if line]


def test_rollback_can_open_the_pull_request(two_versions: Path, tmp_path: Path) -> None:
    PIPELINE = [sys.executable, "-m", "pipeline"]  # noqa: N806
    repo = two_versions
    params = load_params(repo / "params.yaml")
    promote(params, repo, "v0.2.0", "production")
    merge_registry_change(repo, "promote v0.2.0")
    reconcile(params, repo)
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    git(repo, "remote", "add", "origin", str(origin))
    bin_dir, record = tmp_path / "bin", tmp_path / "gh.jsonl"
    recording_gh(bin_dir, record)
    proc = run(
        [*PIPELINE, "rollback", "production", "--branch", "rollback/production", "--open-pr"],
        repo,
        env={"PATH": f"{bin_dir}{os.pathsep}{clean_env()['PATH']}"},
    )
    assert "committed on branch rollback/production" in proc.stdout
    # The branch reached origin with the registry edit, then exactly one PR was requested.
    pushed = git(origin, "show", "rollback/production:models/registry.yaml")
    assert "version: v0.1.0" in pushed
    (call,) = read_record(record)
    argv = call["argv"]
    assert argv[:6] == ["pr", "create", "--base", "main", "--head", "rollback/production"]
    title = argv[argv.index("--title") + 1]
    assert title == "Roll back production from credit-default@v0.2.0 to credit-default@v0.1.0"
    assert "Promotion check" in argv[argv.index("--body") + 1]


def test_open_pr_without_a_branch_is_refused_and_changes_nothing(two_versions: Path) -> None:
    repo = two_versions
    before = (repo / "models/registry.yaml").read_bytes()
    proc = cli(repo, "promote", "v0.2.0", "--to", "production", "--open-pr", check=False)
    assert proc.returncode == 2
    assert "--open-pr needs --branch" in proc.stderr
    assert (repo / "models/registry.yaml").read_bytes() == before
    assert git(repo, "status", "--porcelain") == ""


@pytest.mark.parametrize(
    ("command", "branch", "message"),
    [
        (["promote", "v0.2.0", "--to", "production"], "bad..name", "invalid branch name"),
        (["promote", "v0.2.0", "--to", "production"], "x;id", "invalid branch 'x;id'"),
        (["promote", "v0.2.0", "--to", "production"], "main", "branch 'main' already exists"),
        (["rollback", "production"], "-x", "invalid branch name"),
    ],
)
def test_refused_branch_leaves_the_tree_as_it_was(
    two_versions: Path, command: list[str], branch: str, message: str
) -> None:
    repo = two_versions
    if command[0] == "rollback":  # something to roll back: a canary of v0.2.0
        cli(repo, "promote", "v0.2.0", "--to", "production", "--canary", "10")
        merge_registry_change(repo, "canary v0.2.0")
    before = (repo / "models/registry.yaml").read_bytes()
    branches = git(repo, "branch", "--list")
    proc = cli(repo, *command, f"--branch={branch}", check=False)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert (repo / "models/registry.yaml").read_bytes() == before
    assert git(repo, "status", "--porcelain") == ""
    assert git(repo, "branch", "--list") == branches


def test_model_not_matching_dvc_lock_is_refused(repo: Path) -> None:
    params = load_params(repo / "params.yaml")
    _, model_md5 = commit_version(repo, b"model-1", cache=True)
    register(params, repo)
    (repo / ".dvc/cache/files/md5" / model_md5[:2] / model_md5[2:]).write_bytes(b"tampered")
    promote(params, repo, "v0.1.0", "staging")
    merge_registry_change(repo, "promote")
    with pytest.raises(CheckFailed, match=r"model_bytes: .*does not match [0-9a-f]{32}, the md5"):
        reconcile(params, repo)
    assert tags(repo) == [f"{MODEL}@v0.1.0"]


def tree_state(repo: Path) -> tuple[list[str], str, str]:
    """Tags, the registry file's bytes and `git status`: what a refused command must not change."""
    registry_text = (repo / "models/registry.yaml").read_text()
    return tags(repo), registry_text, git(repo, "status", "--porcelain")


def opt_out_of_verification(repo: Path) -> None:
    """Commit `require_verified_model: false` in every stage (a repository without a remote)."""
    policy = repo / "policies/promotion.yaml"
    text = policy.read_text()
    opted = text.replace("require_verified_model: true", "require_verified_model: false")
    assert opted != text
    policy.write_text(opted)
    git(repo, "commit", "-q", "-am", "no DVC remote in this repository")


def staging_promotion_merged(repo: Path) -> tuple[Params, str]:
    """v0.1.0 registered and its promotion to staging merged, its model bytes in no cache;
    returns the params and the model md5 dvc.lock pins."""
    params = load_params(repo / "params.yaml")
    _, model_md5 = commit_version(repo, b"model-1")  # lock pins it; no bytes anywhere
    register(params, repo)
    promote(params, repo, "v0.1.0", "staging")
    merge_registry_change(repo, "promote")
    return params, model_md5


def test_model_bytes_missing_from_the_cache_fail_closed(repo: Path) -> None:
    params, model_md5 = staging_promotion_merged(repo)
    before = tree_state(repo)
    with pytest.raises(CheckFailed) as info:
        reconcile(params, repo)
    message = str(info.value)
    assert "promotion refused by policy; no tag created" in message
    assert f"model_bytes: models/model.skops (md5 {model_md5}" in message
    assert "is not in the DVC cache" in message
    assert "require_verified_model: false" in message  # the documented opt-out is named
    proc = cli(repo, "reconcile", check=False)
    assert proc.returncode == 1
    assert "is not in the DVC cache" in proc.stderr
    dry = render_reconcile(reconcile(params, repo, dry_run=True), "md")
    assert "| ❌ | `model_bytes` |" in dry  # the promotion PR's check says it before merge
    assert tree_state(repo) == before


def test_opting_out_promotes_unverified_bytes_and_says_so(repo: Path) -> None:
    opt_out_of_verification(repo)
    params, _ = staging_promotion_merged(repo)
    dry = render_reconcile(reconcile(params, repo, dry_run=True), "md")
    assert "| ⚠️ | `model_bytes` | ⚠️ NOT VERIFIED: models/model.skops" in dry
    assert "passed only because require_verified_model is false" in dry
    result = reconcile(params, repo)
    assert result.tags == (f"{MODEL}#staging#1",)
    record = json.loads(git(repo, "tag", "-l", "--format=%(contents)", result.tags[0]))
    assert record["model_artifact"]["verified"] is False
    assert record["model_artifact"]["artifact"] is None
    assert record["verdict"]["passed"] is True


def test_tampered_bytes_fail_even_when_the_policy_opts_out(repo: Path) -> None:
    opt_out_of_verification(repo)
    params, _ = staging_promotion_merged(repo)
    artifact = repo.parent / "downloaded.skops"
    artifact.write_bytes(b"not the registered model")
    before = tree_state(repo)
    with pytest.raises(CheckFailed, match=rf"{artifact}: md5 [0-9a-f]{{32}} does not match"):
        reconcile(params, repo, artifact=artifact)
    assert tree_state(repo) == before


def test_rollback_to_the_previous_holder(two_versions: Path) -> None:
    repo = two_versions
    params = load_params(repo / "params.yaml")
    # v0.2.0 replaces v0.1.0, then turns out bad in production
    promote(params, repo, "v0.2.0", "production")
    merge_registry_change(repo, "promote v0.2.0")
    reconcile(params, repo)
    assert gto_stage(repo, "production") == "v0.2.0"
    proc = cli(repo, "rollback", "production", "--branch", "rollback/production")
    assert "Roll back production from credit-default@v0.2.0 to credit-default@v0.1.0" in proc.stdout
    assert git(repo, "branch", "--show-current") == "rollback/production"
    assert git(repo, "show", "--name-only", "--format=", "HEAD") == "models/registry.yaml"
    assert "version: v0.1.0" in (repo / "models/registry.yaml").read_text()
    git(repo, "switch", "-q", "main")
    git(repo, "merge", "-q", "--ff-only", "rollback/production")
    result = reconcile(params, repo, pr="3", approver="carol")
    (planned,) = result.planned
    # v0.1.0 is worse than v0.2.0, but a rollback is judged on absolute rules only
    assert planned.verdict.passed
    assert any(r.rule == "rollback" for r in planned.verdict.rules)
    assert gto_stage(repo, "production") == "v0.1.0"
    history = json.loads(run(["gto", "history", MODEL, "--json"], repo).stdout)
    assigned = [(e["version"], e["ref"]) for e in history if e["event"] == "assignment"]
    assert sorted(assigned, key=lambda x: x[1]) == [
        ("v0.1.0", f"{MODEL}#production#1"),
        ("v0.2.0", f"{MODEL}#production#2"),
        ("v0.1.0", f"{MODEL}#production#3"),
    ]
    # rolling back again goes to the version before the current one
    rollback(params, repo, "production")
    assert "version: v0.2.0" in (repo / "models/registry.yaml").read_text()


def test_audit_history_stays_intact_and_detects_foreign_tags(two_versions: Path) -> None:
    repo = two_versions
    params = load_params(repo / "params.yaml")
    promote(params, repo, "v0.2.0", "production")
    merge_registry_change(repo, "promote")
    reconcile(params, repo, pr="4", approver="dave")
    rollback(params, repo, "production")
    merge_registry_change(repo, "rollback")
    reconcile(params, repo, pr="5", approver="erin")
    entries = audit(repo, MODEL)
    assert [(e["version"], e["record"]["pr"]) for e in entries] == [
        ("v0.1.0", "1"),
        ("v0.2.0", "4"),
        ("v0.1.0", "5"),
    ]
    assert all(e["intact"] for e in entries)
    assert entries[1]["record"]["previous"] == "v0.1.0"
    assert render_audit(entries, "md").count("| yes |") == 3
    # a stage tag made by hand, without an audit record, is flagged
    git(repo, "tag", "-a", "-m", "manual", f"{MODEL}#production#9", f"{MODEL}@v0.2.0")
    proc = cli(repo, "audit", check=False)
    assert proc.returncode == 1
    assert "| NO |" in proc.stdout


def test_two_reconciles_at_once_make_one_stage_tag(repo: Path) -> None:
    params = load_params(repo / "params.yaml")
    commit_version(repo, b"model-1", cache=True)
    register(params, repo)
    promote(params, repo, "v0.1.0", "production")
    merge_registry_change(repo, "promote")
    cmd = [sys.executable, "-m", "pipeline", "reconcile", "--format", "json"]
    procs = [
        subprocess.Popen(
            cmd,
            cwd=repo,
            env=clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    made = sorted(tag for out, _ in outputs for tag in json.loads(out)["tags"])
    assert made == [f"{MODEL}#production#1"]
    assert [t for t in tags(repo) if "#" in t] == [f"{MODEL}#production#1"]
    assert gto_stage(repo, "production") == "v0.1.0"


def test_canary_recorded_then_completed(two_versions: Path) -> None:
    repo = two_versions
    params = load_params(repo / "params.yaml")
    promote(params, repo, "v0.2.0", "production", canary_percent=10)
    text = (repo / "models/registry.yaml").read_text()
    assert "canary:\n      version: v0.2.0\n      percent: 10" in text
    merge_registry_change(repo, "canary")
    reconcile(params, repo)
    state = read_state(repo, MODEL)
    assert state.canary("production") == ("v0.2.0", 10)
    assert gto_stage(repo, "production") == "v0.1.0"
    assert gto_stage(repo, "production-canary") == "v0.2.0"
    # raising the share is a new, audited assignment
    promote(params, repo, "v0.2.0", "production", canary_percent=50)
    merge_registry_change(repo, "canary 50")
    reconcile(params, repo)
    assert read_state(repo, MODEL).canary("production") == ("v0.2.0", 50)
    # completing: the canary version takes the whole stage, the canary stage is released
    promote(params, repo, "v0.2.0", "production")
    assert load_desired(repo / "models/registry.yaml").stages["production"].canary is None
    merge_registry_change(repo, "complete canary")
    result = reconcile(params, repo)
    assert [(p.action, p.stage) for p in result.planned] == [
        ("assign", "production"),
        ("unassign", "production-canary"),
    ]
    assert gto_stage(repo, "production") == "v0.2.0"
    assert read_state(repo, MODEL).canary("production") is None
    assert "production-canary" not in json.dumps(gto_state(repo)["stage"]) or (
        gto_state(repo)["stage"].get("production-canary") is None
    )
    assert all(e["intact"] for e in audit(repo, MODEL))


def test_canary_aborted_by_rollback(two_versions: Path) -> None:
    repo = two_versions
    params = load_params(repo / "params.yaml")
    promote(params, repo, "v0.2.0", "production", canary_percent=5)
    merge_registry_change(repo, "canary")
    reconcile(params, repo)
    edit = rollback(params, repo, "production")
    assert edit.description == "Abort canary credit-default@v0.2.0 of production"
    merge_registry_change(repo, "abort canary")
    result = reconcile(params, repo)
    assert [(p.action, p.stage, p.version) for p in result.planned] == [
        ("unassign", "production-canary", "v0.2.0")
    ]
    assert result.tags == (f"{MODEL}#production-canary!#3",)
    assert gto_stage(repo, "production") == "v0.1.0"
    assert read_state(repo, MODEL).canary("production") is None


@pytest.mark.parametrize(
    "version",
    ["v1.0.0;rm -rf /", "../v0.1.0", "v0.1.0 ", "v0..1", "v0.1.0$(id)", "0.1.0", "v0.1.0-rc1"],
)
def test_invalid_versions_are_rejected_before_anything_changes(repo: Path, version: str) -> None:
    params = load_params(repo / "params.yaml")
    commit_version(repo, b"model-1")
    register(params, repo)
    before = (repo / "models/registry.yaml").read_bytes()
    with pytest.raises(InputError, match="invalid version"):
        promote(params, repo, version, "production")
    if version.startswith("v1.0.0;"):  # the CLI maps it to exit 2 (one case is enough)
        proc = cli(repo, "promote", version, "--to", "production", check=False)
        assert proc.returncode == 2
        assert "invalid version" in proc.stderr
    assert (repo / "models/registry.yaml").read_bytes() == before
    assert tags(repo) == [f"{MODEL}@v0.1.0"]


@pytest.mark.parametrize("stage", ["prod;x", "prod..x", "a b", "../x", "prod`id`", "p-canary"])
def test_invalid_stages_are_rejected(stage: str) -> None:
    with pytest.raises(InputError, match="invalid stage"):
        validate_stage(stage)


def test_invalid_stage_in_registry_file_tags_nothing(repo: Path) -> None:
    params = load_params(repo / "params.yaml")
    commit_version(repo, b"model-1", cache=True)
    register(params, repo)
    (repo / "models/registry.yaml").write_text('stages:\n  "prod;touch x":\n    version: v0.1.0\n')
    with pytest.raises(ConfigError, match="prod;touch x"):
        reconcile(params, repo)
    (repo / "models/registry.yaml").write_text("stages:\n  production:\n    version: v0.1.0;x\n")
    with pytest.raises(ConfigError, match="does not match"):
        reconcile(params, repo)
    assert tags(repo) == [f"{MODEL}@v0.1.0"]
    assert not (repo / "x").exists()


def test_unknown_stage_or_unregistered_version_is_refused(repo: Path) -> None:
    params = load_params(repo / "params.yaml")
    commit_version(repo, b"model-1")
    register(params, repo)
    with pytest.raises(ConfigError, match="no stage 'qa'"):
        promote(params, repo, "v0.1.0", "qa")
    with pytest.raises(InputError, match="not registered"):
        promote(params, repo, "v9.9.9", "production")


def test_invalid_model_name_is_refused(repo: Path) -> None:
    params_file = repo / "params.yaml"
    params_file.write_text(
        params_file.read_text().replace("model: credit-default", 'model: "bad name;x"', 1)
    )
    commit_version(repo, b"model-1")
    proc = cli(repo, "register", check=False)
    # params.yaml's schema already refuses it; the registry refuses it again on its own
    assert proc.returncode == 2
    assert "project.model" in proc.stderr
    assert tags(repo) == []
    for bad in ("bad name;x", "a..b", "m$(id)", "-m"):
        with pytest.raises(InputError, match="invalid model name"):
            validate_model(bad)


def test_version_validation_accepts_plain_semver() -> None:
    assert validate_version("v10.0.3") == "v10.0.3"


def test_push_sends_tags_to_the_remote(
    two_versions: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = two_versions
    monkeypatch.setenv("REGISTRY_PUSH_TOKEN", "ghs_secret_token_value")
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(repo, "remote", "add", "origin", str(remote))
    params = load_params(repo / "params.yaml")
    promote(params, repo, "v0.2.0", "production")
    merge_registry_change(repo, "promote")
    git(repo, "push", "-q", "origin", "main", f"{MODEL}@v0.1.0", f"{MODEL}@v0.2.0")
    result = reconcile(params, repo, push=True)
    assert git(remote, "tag", "--list", f"{MODEL}#*").split() == list(result.tags)
    # the token travelled in the environment of one command, never into the repository
    assert "ghs_secret" not in (repo / ".git/config").read_text()
    assert "extraheader" not in (repo / ".git/config").read_text()


def test_a_promotion_pr_is_judged_by_the_base_branch_policy(repo: Path) -> None:
    params = load_params(repo / "params.yaml")
    commit_version(repo, b"model-1", cache=True, roc_auc=0.84)
    register(params, repo)
    promote(params, repo, "v0.1.0", "production")
    merge_registry_change(repo, "promote v0.1.0")
    reconcile(params, repo)
    commit_version(repo, b"model-2", cache=True, roc_auc=0.80)
    register(params, repo)
    git(repo, "switch", "-q", "-c", "promote-and-relax")
    policy_file = repo / "policies/promotion.yaml"
    relaxed_text = (
        policy_file.read_text()
        .replace("abs_tolerance: 0.005", "abs_tolerance: 0.5")
        .replace("rel_tolerance: 0.01", "rel_tolerance: 0.5")
    )
    policy_file.write_text(relaxed_text)
    promote(params, repo, "v0.2.0", "production")
    git(repo, "commit", "-q", "-am", "promote v0.2.0 and relax the policy")
    relaxed = reconcile(params, repo, dry_run=True)
    assert relaxed.passed  # the PR's own (relaxed) policy would let it through ...
    judged = reconcile(params, repo, dry_run=True, policy_rev="main")
    assert not judged.passed  # ... the base branch's policy does not
    assert "vs_holder:roc_auc" in " ".join(judged.planned[0].verdict.failures)
    with pytest.raises(UsageError, match="dry runs"):
        reconcile(params, repo, policy_rev="main")


def test_revisions_that_look_like_options_are_refused(repo: Path) -> None:
    params = load_params(repo / "params.yaml")
    commit_version(repo, b"model-1")
    register(params, repo)
    proc = cli(repo, "policy", "check", "--stage", "staging", "--candidate=--output=x", check=False)
    assert proc.returncode == 2
    assert "not a commit" in proc.stderr or "not a git revision" in proc.stderr
    assert not (repo / "x").exists()


def test_two_different_promotions_at_once_are_serialized(two_versions: Path) -> None:
    """Two checkouts of one repository (git worktrees share refs) reconcile different desired
    states at the same time: the lock orders them, each gets its own counter, and the second
    one's audit record names the first one's version as the previous holder."""
    repo = two_versions
    params = load_params(repo / "params.yaml")
    other = repo.parent / "other"
    git(repo, "worktree", "add", "-q", "-b", "other", str(other))
    promote(params, repo, "v0.1.0", "staging")
    merge_registry_change(repo, "staging v0.1.0")
    promote(params, other, "v0.2.0", "staging")
    git(other, "commit", "-q", "-am", "staging v0.2.0")
    cmd = [sys.executable, "-m", "pipeline", "reconcile", "--format", "json"]
    procs = [
        subprocess.Popen(
            cmd,
            cwd=where,
            env=clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for where in (repo, other)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    codes = [p.returncode for p in procs]
    # The lock decides the order, and the order decides the second verdict: v0.2.0 after v0.1.0
    # passes; v0.1.0 after v0.2.0 is judged against a better holder and refused. Both outcomes
    # are serialized; what may never happen is both judged against "no holder".
    assert codes in ([0, 0], [1, 0]), outputs
    made = sorted(tag for out, _ in outputs if out for tag in json.loads(out)["tags"])
    entries = [e for e in audit(repo, MODEL) if e["stage"] == "staging"]
    assert all(e["intact"] for e in entries)
    if codes == [0, 0]:
        assert made == [f"{MODEL}#staging#2", f"{MODEL}#staging#3"]
        first, second = entries
        assert first["record"]["previous"] is None
        assert second["record"]["previous"] == first["version"]
        assert {first["version"], second["version"]} == {"v0.1.0", "v0.2.0"}
        assert gto_stage(repo, "staging") == second["version"]
    else:
        assert made == [f"{MODEL}#staging#2"]
        refusal = outputs[0][1]
        assert "refused" in refusal
        assert "v0.1.0" in refusal
        assert "vs_holder" in refusal
        (only,) = entries
        assert only["version"] == "v0.2.0"
        assert only["record"]["previous"] is None
        assert gto_stage(repo, "staging") == "v0.2.0"
