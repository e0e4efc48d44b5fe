"""The PR workflows, run step by step by the harness in real git repositories.

pr.yml's `report` job retrains a PR branch that changes a parameter and builds the report against
the merge-base; pr-comment.yml posts it through a recording `cml` shim after checking the PR
number and head SHA with a `gh` shim standing in for the GitHub API. Hostile events (shell in the
PR title / branch name) must create no sentinel; tampered artifacts must post nothing. The
`writeback` job commits dvc.lock + metrics to the PR branch once, and never loops.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pipeline import report as rp
from tests.conftest import clone_of, git, set_param
from tests.harness import (
    JobResult,
    StepContext,
    cml_shim,
    gh_shim,
    read_record,
    run_job,
)

pytestmark = pytest.mark.e2e

REPO = "example-org/example-repo"
PR_NUMBER = 7
OLD_LR, NEW_LR = "0.1", "0.05"


def link_venv(repo: Path) -> None:
    """`.venv` in the test repo made of links to this venv, with a fresh stamp, so the
    workflows' `make setup` finds an installed environment instead of building one."""
    real = Path(sys.executable).parent.parent
    venv = repo / ".venv"
    venv.mkdir()
    for entry in real.iterdir():
        if entry.name != ".installed":
            (venv / entry.name).symlink_to(entry)
    (venv / ".installed").touch()


def pr_event(
    head_sha: str,
    *,
    title: str = "Lower the learning rate",
    head_ref: str = "feature",
    head_repo: str = REPO,
) -> dict[str, Any]:
    return {
        "action": "synchronize",
        "number": PR_NUMBER,
        "pull_request": {
            "number": PR_NUMBER,
            "title": title,
            "body": title,
            "head": {"ref": head_ref, "sha": head_sha, "repo": {"full_name": head_repo}},
            "base": {"ref": "main", "sha": "0" * 40, "repo": {"full_name": REPO}},
        },
        "repository": {"full_name": REPO, "default_branch": "main"},
        "sender": {"login": "data-scientist"},
    }


def upload_stub(store: Path) -> Any:
    """actions/upload-artifact: copy the listed files into `store`."""

    def upload(ctx: StepContext) -> dict[str, str]:
        assert ctx.with_["name"] == "pr-report"
        store.mkdir(parents=True, exist_ok=True)
        for line in ctx.with_["path"].split():
            shutil.copy2(ctx.workdir / line, store / Path(line).name)
        return {"artifact-id": "1"}

    return upload


def download_stub(store: Path) -> Any:
    """actions/download-artifact: copy the stored artifact into `path`."""

    def download(ctx: StepContext) -> dict[str, str]:
        assert ctx.with_["name"] == "pr-report"
        dest = Path(ctx.with_["path"])
        dest.mkdir(parents=True, exist_ok=True)
        for item in store.iterdir():
            shutil.copy2(item, dest / item.name, follow_symlinks=False)
        return {"download-path": str(dest)}

    return download


@dataclass
class Flow:
    root: Path
    origin: Path
    work: Path
    base_metrics: dict[str, float]
    head_sha: str
    stale_before: tuple[str, ...] | None
    report: JobResult
    artifact: Path


def run_report_job(work: Path, event: dict[str, Any], store: Path) -> JobResult:
    return run_job(
        work / ".github/workflows/pr.yml",
        "report",
        workdir=work,
        event=event,
        event_name="pull_request",
        stub_uses={"actions/upload-artifact": upload_stub(store)},
    )


@pytest.fixture(scope="module")
def flow(reproduced_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Flow:
    root = tmp_path_factory.mktemp("prflow")
    origin = clone_of(reproduced_repo, root / "origin")
    base_metrics = json.loads((origin / "models/metrics.json").read_text())
    work = clone_of(origin, root / "work")
    git(work, "remote", "add", "origin", str(origin))
    git(work, "checkout", "-q", "-b", "feature")
    set_param(work / "params.yaml", "learning_rate", NEW_LR)
    git(work, "commit", "-q", "-am", "Lower the learning rate")
    # main moves on after the branch point, with metrics the report must NOT compare against
    fake = dict.fromkeys(base_metrics, 0.123456)
    (origin / "models/metrics.json").write_text(json.dumps(fake))
    git(origin, "commit", "-q", "-am", "main moves on")
    git(work, "fetch", "-q", "origin")
    link_venv(work)
    head_sha = git(work, "rev-parse", "HEAD")
    stale_before = rp.lock_status(work)  # the param changed, dvc.lock did not
    artifact = root / "artifact"
    result = run_report_job(work, pr_event(head_sha), artifact)
    return Flow(root, origin, work, base_metrics, head_sha, stale_before, result, artifact)


def _why(result: JobResult) -> str:
    return "\n".join(
        f"--- {s.id or s.name} rc={s.returncode} skipped={s.skipped} {s.seconds:.1f}s\n"
        f"{s.stdout[-2000:]}\n"
        f"{s.stderr[-3000:]}"
        for s in result.steps
    )


def test_report_job_builds_report_against_merge_base(flow: Flow) -> None:
    result = flow.report
    for key in ("Install the locked environment", "Reproduce the pipeline"):
        assert result.step(key).returncode == 0, _why(result)
    pull = result.step("Pull data, model and run-cache from the DVC remote (when configured)")
    assert pull.returncode == 0
    assert "DVC_REMOTE_URL is not configured" in pull.stdout
    build = result.step("Build the report (and the job summary)")
    assert build.returncode == 0, _why(result)
    # the job's verdict follows the policy step: fail at the end, after the upload
    policy = result.step("policy")
    final = result.step("Fail when the policy failed (this is the required check)")
    assert result.step("Upload the report for pr-comment.yml").skipped is False
    if policy.returncode == 0:
        assert final.skipped
        assert result.ok
    else:
        assert policy.returncode == 1, _why(result)
        assert final.returncode == 1
        assert not result.ok

    assert sorted(p.name for p in flow.artifact.iterdir()) == [
        "head-sha",
        "pr-number",
        "report.json",
        "report.md",
    ]
    assert (flow.artifact / "pr-number").read_text() == f"{PR_NUMBER}\n"
    assert (flow.artifact / "head-sha").read_text() == f"{flow.head_sha}\n"
    md = (flow.artifact / "report.md").read_text()
    assert md.startswith(rp.MARKER)
    assert result.summary.startswith(rp.MARKER)  # the same report in the job summary

    new_metrics = json.loads((flow.work / "models/metrics.json").read_text())
    base_acc, new_acc = flow.base_metrics["accuracy"], new_metrics["accuracy"]
    delta = rp.metric_delta("accuracy", base_acc, new_acc)
    row = next(line for line in md.splitlines() if line.startswith("| `accuracy` |"))
    assert row.startswith(f"| `accuracy` | {rp.fmt(base_acc)} | {rp.fmt(new_acc)} | ")
    assert rp.fmt_change(delta) in row
    assert rp.MARKS[delta.verdict] in row
    assert "0.1235" not in md  # main's later (fake) metrics are not the base
    assert f"| `train.kwargs.learning_rate` | {OLD_LR} | {NEW_LR} |" in md
    assert "| `models/model.skops` | model | `train` |" in md
    assert flow.stale_before is not None
    assert "train" in flow.stale_before  # what the report would flag before `dvc repro`
    assert "✅ `dvc.lock` is up to date" in md  # ... and after it
    assert "### Promotion policy (`staging`)" in md
    doc = json.loads((flow.artifact / "report.json").read_text())
    assert doc["base"]["rev"] == git(flow.work, "merge-base", "HEAD", "origin/main")


@dataclass
class CommentRun:
    result: JobResult
    cml_calls: list[dict[str, Any]]
    gh_calls: list[dict[str, Any]]


def run_comment_job(
    tmp: Path, artifact: Path, *, run_head_sha: str, api_head_sha: str, event_extra: Any = None
) -> CommentRun:
    tmp.mkdir(parents=True, exist_ok=True)
    bin_dir = tmp / "bin"
    cml_record, gh_record = tmp / "cml.jsonl", tmp / "gh.jsonl"
    cml_shim(bin_dir, cml_record)
    gh_shim(
        bin_dir, gh_record, {f"repos/{REPO}/pulls/{PR_NUMBER}": {"head": {"sha": api_head_sha}}}
    )
    empty = tmp / "runner-workdir"  # no checkout: the job works in an empty directory
    empty.mkdir(exist_ok=True)
    event: dict[str, Any] = {
        "action": "completed",
        "workflow_run": {
            "id": 4242,
            "name": "PR report",
            "event": "pull_request",
            "conclusion": "failure",
            "head_sha": run_head_sha,
            "head_branch": "feature",
            "display_title": "Lower the learning rate",
            "pull_requests": [],
        },
        "repository": {"full_name": REPO},
    }
    if event_extra:
        event["workflow_run"].update(event_extra)
    result = run_job(
        Path(__file__).resolve().parents[2] / ".github/workflows/pr-comment.yml",
        "comment",
        workdir=empty,
        event=event,
        event_name="workflow_run",
        stub_uses={"actions/download-artifact": download_stub(artifact)},
        path_prepend=[bin_dir],
    )
    return CommentRun(result, read_record(cml_record), read_record(gh_record))


def test_comment_job_posts_the_report_once(flow: Flow, tmp_path: Path) -> None:
    run = run_comment_job(
        tmp_path, flow.artifact, run_head_sha=flow.head_sha, api_head_sha=flow.head_sha
    )
    assert run.result.ok, _why(run.result)
    [call] = run.cml_calls
    report_path = call["argv"][-1]
    assert call["argv"] == [
        "comment",
        "update",
        "--driver=github",
        f"--repo=https://github.com/{REPO}",
        f"--target=pr/{PR_NUMBER}",
        "--watermark-title=ml-gitops-report",
        "--publish=false",
        report_path,
    ]
    assert call["files"][report_path] == (flow.artifact / "report.md").read_text()
    assert call["env"]["REPO_TOKEN"] is True
    [api] = run.gh_calls
    assert api["argv"][:2] == ["api", f"repos/{REPO}/pulls/{PR_NUMBER}"]
    assert api["env"]["GH_TOKEN"] is True


GOOD_SHA = "a" * 40


def tampered(dest: Path, **files: str) -> Path:
    """A well-formed artifact (as pr.yml uploads it), then the given files overwritten."""
    dest.mkdir(parents=True)
    (dest / "report.md").write_text(f"{rp.MARKER}\n## report\n")
    (dest / "pr-number").write_text(f"{PR_NUMBER}\n")
    (dest / "head-sha").write_text(f"{GOOD_SHA}\n")
    for name, content in files.items():
        (dest / name.replace("_", "-")).write_text(content)
    return dest


def test_untampered_handmade_artifact_is_posted(tmp_path: Path) -> None:
    """The control for the tampering cases below: the same artifact, untouched, is posted."""
    run = run_comment_job(
        tmp_path / "job", tampered(tmp_path / "a"), run_head_sha=GOOD_SHA, api_head_sha=GOOD_SHA
    )
    assert run.result.ok, _why(run.result)
    assert len(run.cml_calls) == 1


@pytest.mark.parametrize(
    ("files", "api_sha", "run_sha", "message"),
    [
        ({"pr_number": "1;id\n"}, None, None, "pr-number is not a number"),
        ({"pr_number": "$(touch x)\n"}, None, None, "pr-number is not a number"),
        ({"head_sha": "not-a-sha\n"}, None, None, "head-sha is not a 40-hex SHA"),
        ({}, "b" * 40, None, "stale run or wrong PR"),  # the PR moved on / another PR
        ({}, None, "c" * 40, "not the triggering run's SHA"),
    ],
)
def test_tampered_artifact_posts_nothing(
    tmp_path: Path,
    files: dict[str, str],
    api_sha: str | None,
    run_sha: str | None,
    message: str,
) -> None:
    artifact = tampered(tmp_path / "artifact", **files)
    run = run_comment_job(
        tmp_path / "job",
        artifact,
        run_head_sha=run_sha or GOOD_SHA,
        api_head_sha=api_sha or GOOD_SHA,
    )
    check = run.result.step("check")
    assert check.returncode == 1
    assert message in check.stdout
    assert run.cml_calls == []
    assert not run.result.ok
    assert run.result.step("Post or update the single report comment").skipped


def test_symlinked_artifact_file_posts_nothing(tmp_path: Path) -> None:
    artifact = tampered(tmp_path / "artifact")
    (artifact / "report.md").unlink()
    (artifact / "report.md").symlink_to("/etc/passwd")
    run = run_comment_job(tmp_path / "job", artifact, run_head_sha=GOOD_SHA, api_head_sha=GOOD_SHA)
    assert "report.md missing or not a regular file" in run.result.step("check").stdout
    assert run.cml_calls == []


def test_hostile_event_creates_no_sentinel(flow: Flow, tmp_path: Path) -> None:
    sentinel = tmp_path / "sentinel"
    payloads = [
        f"$(touch {sentinel}-1)",
        f"`touch {sentinel}-2`",
        f'"; touch {sentinel}-3; echo "',
        f"'; touch {sentinel}-4; echo '",
    ]
    hostile = " ".join(payloads)
    # branch names cannot hold spaces: the same payloads with ${IFS}
    hostile_ref = f"x$(touch${{IFS}}{sentinel}-5)`touch${{IFS}}{sentinel}-6`"
    work = clone_of(flow.work, tmp_path / "work")
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    git(work, "remote", "set-url", "origin", str(origin))
    store = tmp_path / "artifact"
    event = pr_event(flow.head_sha, title=hostile, head_ref=hostile_ref)
    event["pull_request"]["body"] = hostile
    result = run_report_job(work, event, store)
    assert result.step("Build the report (and the job summary)").returncode == 0, _why(result)
    comment = run_comment_job(
        tmp_path / "comment",
        store,
        run_head_sha=flow.head_sha,
        api_head_sha=flow.head_sha,
        event_extra={"head_branch": hostile_ref, "display_title": hostile, "name": hostile},
    )
    assert comment.result.ok, _why(comment.result)
    writeback = run_job(
        work / ".github/workflows/pr.yml",
        "writeback",
        workdir=work,
        event=event,
        event_name="pull_request",
        needs={"report": {"result": "success", "outputs": {}}},
    )
    assert writeback.ok, _why(writeback)
    # the hostile branch name is a (legal) git ref: it was pushed to, as data, never run
    assert git(origin, "for-each-ref", "--format=%(refname)") == f"refs/heads/{hostile_ref}"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("sentinel")) == []


def test_writeback_commits_once_and_never_loops(flow: Flow, tmp_path: Path) -> None:
    origin = clone_of(flow.origin, tmp_path / "origin")
    work = clone_of(flow.work, tmp_path / "work")
    git(work, "remote", "set-url", "origin", str(origin))
    git(work, "push", "-q", "origin", f"{flow.head_sha}:refs/heads/feature")  # the PR branch
    event = pr_event(flow.head_sha)
    needs = {"report": {"result": "success", "outputs": {}}}

    def writeback(ev: dict[str, Any], **kw: Any) -> JobResult:
        return run_job(
            work / ".github/workflows/pr.yml",
            "writeback",
            workdir=work,
            event=ev,
            event_name="pull_request",
            needs=needs,
            **kw,
        )

    # turned off by the repository variable, and never for forks
    assert writeback(event, vars={"PR_WRITEBACK": "false"}).skipped
    fork = pr_event(flow.head_sha, head_repo="someone/fork")
    assert writeback(fork).skipped

    result = writeback(event)
    assert result.ok, _why(result)
    assert result.step("guard").stdout == ""  # nothing to skip
    assert (
        "outputs and run-cache not pushed"
        in result.step("Push outputs and run-cache to the DVC remote (when configured)").stdout
    )
    pushed = git(origin, "rev-parse", "feature")
    assert pushed != flow.head_sha
    assert git(origin, "log", "-1", "--format=%an", "feature") == "github-actions[bot]"
    assert git(origin, "rev-parse", "feature~1") == flow.head_sha
    changed = git(origin, "diff", "--name-only", f"{flow.head_sha}..feature").splitlines()
    assert "dvc.lock" in changed
    assert "models/metrics.json" in changed
    assert not any(p.startswith(("pr-report", ".venv")) for p in changed)
    assert "x-access-token" not in (work / ".git/config").read_text()

    # the bot's commit is the new head: the next run must not write back again
    git(work, "reset", "-q", "--hard", pushed)
    again = writeback(pr_event(pushed))
    assert again.ok, _why(again)
    assert "nothing to write back" in again.step("guard").stdout
    assert again.step("Commit and push dvc.lock and metrics").skipped
    assert git(origin, "rev-parse", "feature") == pushed
