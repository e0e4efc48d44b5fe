"""The registry workflows end to end on a reproduced pipeline, run step by step by the harness.

register.yml tags the reproduced model as a version and pushes the tag to `origin`; a promotion
PR made with `promote --branch` is judged by promotion.yml (report artifact for pr-comment.yml);
after the merge reconcile.yml creates the stage tag with its audit record (PR and approver from
a `gh` stand-in) and pushes it. The real `gto` then reads `origin`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import load_params
from pipeline.registry import lock_outs, promote, reconcile, register
from tests.conftest import clone_of, git, run
from tests.harness import JobResult, StepContext, run_job
from tests.unit.test_registry import commit_version, make_registry_repo

pytestmark = pytest.mark.e2e

REPO = "example-org/example-repo"
PR_NUMBER = 12


def link_venv(repo: Path) -> None:
    """A `.venv` of links to this venv with a fresh stamp, so `make setup` is a no-op."""
    real = Path(sys.executable).parent.parent
    venv = repo / ".venv"
    venv.mkdir()
    for entry in real.iterdir():
        if entry.name != ".installed":
            (venv / entry.name).symlink_to(entry)
    (venv / ".installed").touch()


def gh_stand_in(bin_dir: Path, record: Path) -> None:
    """`gh api`: the merged PR of a commit is #12, its last approver `alice`."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "gh"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"open({str(record)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
        "endpoint = [a for a in sys.argv[2:] if not a.startswith('-')][0]\n"
        "if endpoint.endswith('/pulls'):\n"
        f"    print({PR_NUMBER})\n"
        "elif endpoint.endswith('/reviews'):\n"
        "    print('bob'); print('alice')\n"
        "else:\n"
        "    sys.exit(1)\n"
    )
    script.chmod(0o755)


def upload_stub(store: Path) -> Any:
    def upload(ctx: StepContext) -> dict[str, str]:
        assert ctx.with_["name"] == "pr-report"
        store.mkdir(parents=True, exist_ok=True)
        for line in ctx.with_["path"].split():
            shutil.copy2(ctx.workdir / line, store / Path(line).name)
        return {"artifact-id": "1"}

    return upload


def push_event(sha: str) -> dict[str, Any]:
    return {
        "ref": "refs/heads/main",
        "after": sha,
        "repository": {"full_name": REPO, "default_branch": "main"},
        "head_commit": {"id": sha, "message": "Merge pull request #12"},
    }


def pr_event(head_sha: str) -> dict[str, Any]:
    return {
        "action": "opened",
        "number": PR_NUMBER,
        "pull_request": {
            "number": PR_NUMBER,
            "title": "Promote to staging",
            "head": {"ref": "promote/staging", "sha": head_sha, "repo": {"full_name": REPO}},
            "base": {"ref": "main", "sha": "0" * 40, "repo": {"full_name": REPO}},
        },
        "repository": {"full_name": REPO, "default_branch": "main"},
    }


def why(result: JobResult) -> str:
    return "\n".join(
        f"--- {s.id or s.name} rc={s.returncode} skipped={s.skipped}\n{s.stdout[-3000:]}\n"
        f"{s.stderr[-3000:]}"
        for s in result.steps
    )


def test_register_promote_reconcile_workflows(reproduced_repo: Path, tmp_path: Path) -> None:
    origin = clone_of(reproduced_repo, tmp_path / "origin")
    work = clone_of(reproduced_repo, tmp_path / "work")
    git(work, "remote", "add", "origin", str(origin))
    git(work, "fetch", "-q", "origin")
    link_venv(work)
    params = load_params(work / "params.yaml")
    model = params.project.model
    head = git(work, "rev-parse", "HEAD")

    # 1. merge to main with a new model -> register.yml tags the version on origin
    registered = run_job(
        work / ".github/workflows/register.yml",
        "register",
        workdir=work,
        event=push_event(head),
        event_name="push",
    )
    assert registered.ok, why(registered)
    version_tag = f"{model}@v0.1.0"
    assert git(origin, "tag", "--list", f"{model}*") == version_tag
    record = json.loads(git(origin, "tag", "-l", "--format=%(contents)", version_tag))
    assert record["model_md5"] == lock_outs(work, "HEAD")["models/model.skops"]

    # 2. promotion PR: promote --branch, then promotion.yml judges it
    run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "promote",
            "v0.1.0",
            "--to",
            "staging",
            "--branch",
            "promote/staging",
        ],
        work,
    )
    pr_head = git(work, "rev-parse", "HEAD")
    store = tmp_path / "artifact"
    checked = run_job(
        work / ".github/workflows/promotion.yml",
        "check",
        workdir=work,
        event=pr_event(pr_head),
        event_name="pull_request",
        github={"base_ref": "main", "head_ref": "promote/staging"},
        stub_uses={"actions/upload-artifact": upload_stub(store)},
    )
    policy = checked.step("policy")
    assert policy.returncode in (0, 1), why(checked)
    assert sorted(p.name for p in store.iterdir()) == ["head-sha", "pr-number", "report.md"]
    assert (store / "pr-number").read_text() == f"{PR_NUMBER}\n"
    assert (store / "head-sha").read_text() == f"{pr_head}\n"
    report = (store / "report.md").read_text()
    assert "**assign** `staging` → `v0.1.0` (first model of the stage)" in report
    assert "### Promotion policy `staging`" in report
    assert "`absolute:roc_auc`" in report
    assert checked.ok == (policy.returncode == 0)
    assert policy.returncode == 0, (
        f"the shipped staging policy refused the template model:\n{report}"
    )

    # 3. merge -> reconcile.yml creates the stage tag with its audit record and pushes it
    git(work, "switch", "-q", "main")
    git(work, "merge", "-q", "--ff-only", "promote/staging")
    bin_dir, calls = tmp_path / "bin", tmp_path / "gh-calls.jsonl"
    gh_stand_in(bin_dir, calls)
    reconciled = run_job(
        work / ".github/workflows/reconcile.yml",
        "reconcile",
        workdir=work,
        event=push_event(git(work, "rev-parse", "HEAD")),
        event_name="push",
        path_prepend=[bin_dir],
    )
    assert reconciled.ok, why(reconciled)
    assert reconciled.outputs["pr"] == {"pr": str(PR_NUMBER), "approver": "alice"}
    stage_tag = f"{model}#staging#1"
    assert git(origin, "tag", "--list", f"{model}#*") == stage_tag
    audit = json.loads(git(origin, "tag", "-l", "--format=%(contents)", stage_tag))
    assert audit["pr"] == str(PR_NUMBER)
    assert audit["approver"] == "alice"
    assert audit["version"] == "v0.1.0"
    assert audit["model_artifact"]["verified"] is True  # the DVC cache holds the model
    policy_bytes = (work / "policies/promotion.yaml").read_bytes()
    assert audit["policy"]["sha256"] == hashlib.sha256(policy_bytes).hexdigest()
    metrics = json.loads((work / "models/metrics.json").read_text())
    assert audit["metrics"] == metrics
    assert "Created tags: `" + stage_tag + "`" in reconciled.summary

    # the real gto reads the registry on origin
    shown = json.loads(run(["gto", "show", "--json"], origin).stdout)[model]
    assert shown["version"] == "v0.1.0"
    assert shown["stage"]["staging"] == "v0.1.0"
    history = json.loads(run(["gto", "history", model, "--json"], origin).stdout)
    assert {e["event"] for e in history} == {"registration", "assignment"}
    # the production policy on the real model, read from its tag (dvc.lock checked at the tag)
    check = run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "policy",
            "check",
            "--stage",
            "production",
            "--candidate",
            version_tag,
            "--format",
            "json",
        ],
        work,
        check=False,
    )
    verdict = json.loads(check.stdout)
    assert check.returncode == (0 if verdict["passed"] else 1)
    lock_rule = next(r for r in verdict["rules"] if r["rule"] == "dvc_lock")
    assert lock_rule["passed"], lock_rule
    assert (
        f"consistent at {git(work, 'rev-parse', version_tag + '^{commit}')}" in lock_rule["reason"]
    )
    assert verdict["passed"], verdict
    # the repo is in sync: running reconcile again creates nothing
    again = run([sys.executable, "-m", "pipeline", "reconcile"], work)
    assert "nothing to do" in again.stdout


def test_promotion_check_fails_the_pr_when_the_policy_fails(tmp_path: Path) -> None:
    """A worse model promoted to production: the report says why, the required check fails."""
    repo = make_registry_repo(tmp_path / "repo")
    for rel in (
        "Makefile",
        "pyproject.toml",
        "requirements.lock",
        ".github/workflows/promotion.yml",
    ):
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(Path(__file__).resolve().parents[2] / rel, repo / rel)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "workflow")
    link_venv(repo)
    params = load_params(repo / "params.yaml")
    commit_version(repo, b"model-1", cache=True, roc_auc=0.84)
    register(params, repo)
    promote(params, repo, "v0.1.0", "production")
    git(repo, "commit", "-q", "-am", "promote v0.1.0")
    reconcile(params, repo)
    commit_version(repo, b"model-2", cache=True, roc_auc=0.80)
    register(params, repo)
    git(repo, "update-ref", "refs/remotes/origin/main", "HEAD")  # what checkout fetches
    git(repo, "switch", "-q", "-c", "promote/production")
    promote(params, repo, "v0.2.0", "production")
    git(repo, "commit", "-q", "-am", "promote v0.2.0")
    store = tmp_path / "artifact"
    result = run_job(
        repo / ".github/workflows/promotion.yml",
        "check",
        workdir=repo,
        event=pr_event(git(repo, "rev-parse", "HEAD")),
        event_name="pull_request",
        github={"base_ref": "main"},
        stub_uses={"actions/upload-artifact": upload_stub(store)},
    )
    assert not result.ok
    assert result.step("policy").outcome == "failure", why(result)  # make exits 2 for any failure
    assert result.step("Upload the report for pr-comment.yml").skipped is False
    final = result.step("Fail when the policy failed (this is the required check)")
    assert final.returncode == 1
    report = (store / "report.md").read_text()
    assert "### Promotion policy `production`: ❌ failed" in report
    assert "candidate 0.8 vs holder 0.84" in report
    assert report in result.summary
    assert git(repo, "tag", "--list", "*#*").split() == ["credit-default#production#1"]
