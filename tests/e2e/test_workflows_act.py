"""The workflows under a real Actions runner (act, host mode) against a GitHub stand-in.

Each scenario is a repository on the stand-in's git remote (the template, reproduced, on
`main`), events as GitHub sends them, and the workflow files as the triggering commit holds
them. Nothing of a workflow is stubbed: actions run from their release code, `make` targets and
the CLI run in a fresh checkout, `gh` and CML (built from source) call the stand-in's API.
Assertions are on what GitHub would see: the recorded API calls and the remote's refs.

Run these alone with `make test-act` (they take several minutes: every job installs the locked
environment and reproduces the pipeline, as on GitHub).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

from pipeline.registry import lock_outs
from tests.act_runner import ActResult, Runner, RunnerUnavailable, tool
from tests.conftest import clone_of, git, run, set_param
from tests.github_standin import GitHubStandIn, github_standin

pytestmark = [pytest.mark.e2e, pytest.mark.act]

MODEL = "credit-default"  # project.model of the demo params
REPORT_JOB = "Retrain, evaluate, report"
GATE = "Policy passed and dvc.lock committed (this is the required check)"
PAT = "github_pat_standinmaintainer0000000000"  # a WRITEBACK_TOKEN / RETRAIN_PR_TOKEN stand-in


def unavailable(reason: str) -> NoReturn:
    """Skip, with the reason; fail instead where the runner is required (REQUIRE_ACT=1, as
    `.ci/run` and the template's CI set it), so a green run always means the scenarios ran."""
    if os.environ.get("REQUIRE_ACT") == "1":
        pytest.fail(f"REQUIRE_ACT=1 but the Actions runner cannot run: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def act_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """act's action cache and the CML build, shared by every scenario of the session."""
    if sys.version_info[:2] != (3, 11):
        unavailable("the workflows ask setup-python for 3.11; this interpreter is another")
    try:
        tool("act")
        tool("gh")
    except RunnerUnavailable as exc:
        unavailable(str(exc))
    return tmp_path_factory.mktemp("act-cache")


@dataclass
class Project:
    """A repository on the stand-in, a local clone to author commits, and the runner."""

    github: GitHubStandIn
    runner: Runner
    work: Path  # a clone of the remote where the test makes its commits
    tmp: Path

    def push(self, *refspecs: str) -> None:
        git(self.work, "push", "-q", "--force", str(self.github.git_dir), *refspecs)

    def sha(self, rev: str = "HEAD") -> str:
        return git(self.work, "rev-parse", rev)

    def pull_request(
        self,
        number: int,
        *,
        branch: str,
        title: str,
        edit: Callable[[Path], None],
        fork: str | None = None,
        message: str = "change",
    ) -> dict[str, Any]:
        """Commit `edit` on `branch` from main, publish refs/pull/N/{head,merge}, open the PR,
        and return the `pull_request` event GitHub would send."""
        git(self.work, "checkout", "-q", "-B", branch, "main")
        edit(self.work)
        git(self.work, "add", "-A")
        git(self.work, "commit", "-q", "-m", message)
        head = self.sha()
        if fork is None:
            self.push(f"HEAD:refs/heads/{branch}")
        self.github.open_pull(
            number,
            title=title,
            head_ref=branch,
            head_sha=head,
            base_ref="main",
            head_repo=fork or self.github.full_name,
        )
        return self.synchronize(number, head)

    def synchronize(self, number: int, head: str) -> dict[str, Any]:
        """The PR's head is `head` now: new head and merge refs, and the event for it."""
        git(self.work, "fetch", "-q", str(self.github.git_dir), head)  # e.g. a bot's commit
        git(self.work, "checkout", "-q", "--detach", "main")
        git(self.work, "merge", "-q", "--no-ff", "-m", f"Merge {head} into main", head)
        merge = self.sha()
        self.push(f"{head}:refs/pull/{number}/head", f"{merge}:refs/pull/{number}/merge")
        pr = self.github.pulls[number]
        pr.head_sha = head
        return {
            "action": "synchronize",
            "number": number,
            "pull_request": self.github.pull_json(pr),
            "repository": self.repository(),
            "sender": {"login": pr.user},
        }

    def repository(self) -> dict[str, Any]:
        return {
            "full_name": self.github.full_name,
            "name": self.github.name,
            "owner": {"login": self.github.owner},
            "default_branch": "main",
        }

    def run_pr(self, event: dict[str, Any], run_id: int, **kwargs: Any) -> ActResult:
        number = event["number"]
        merge = self.github.commit_of(f"refs/pull/{number}/merge")
        return self.runner.run(
            "pr.yml",
            "pull_request",
            event,
            sha=merge,
            ref=f"refs/pull/{number}/merge",
            run_id=run_id,
            **kwargs,
        )

    def run_comment(
        self, run_id: int, triggering: int, name: str = "PR report", head: str | None = None
    ) -> ActResult:
        """pr-comment.yml for the completed run `triggering` (of the PR head its artifact
        names, or `head` for a run that made none)."""
        head = head or self._artifact_file(triggering, "head-sha").strip()
        event = {
            "action": "completed",
            "workflow": {"name": name},
            "workflow_run": {
                "id": triggering,
                "name": name,
                "event": "pull_request",
                "status": "completed",
                "conclusion": "failure",  # a failed required check still gets its comment
                "head_sha": head,
                "pull_requests": [],
            },
            "repository": self.repository(),
        }
        main = self.github.commit_of("refs/heads/main")
        return self.runner.run(
            "pr-comment.yml", "workflow_run", event, sha=main, ref="refs/heads/main", run_id=run_id
        )

    def run_push(self, workflow: str, run_id: int, before: str, **kwargs: Any) -> ActResult:
        after = self.github.commit_of("refs/heads/main")
        event = {
            "ref": "refs/heads/main",
            "before": before,
            "after": after,
            "repository": self.repository(),
            "pusher": {"name": "maintainer"},
        }
        return self.runner.run(
            workflow, "push", event, sha=after, ref="refs/heads/main", run_id=run_id, **kwargs
        )

    def artifact(self, run_id: int) -> dict[str, str]:
        """The `pr-report` artifact of a run: file name -> text."""
        path = self.runner.artifacts / str(run_id) / "pr-report" / "pr-report.zip"
        assert path.is_file(), f"run {run_id} uploaded no pr-report artifact"
        with zipfile.ZipFile(path) as archive:
            return {name: archive.read(name).decode() for name in archive.namelist()}

    def _artifact_file(self, run_id: int, name: str) -> str:
        return self.artifact(run_id)[name]


@pytest.fixture
def project(reproduced_repo: Path, act_cache: Path, tmp_path: Path) -> Iterator[Project]:
    """The reproduced template on the stand-in's `main`, and a clone to make changes in."""
    with github_standin(tmp_path / "github") as github:
        work = clone_of(reproduced_repo, tmp_path / "work")
        git(work, "config", "uploadpack.allowAnySHA1InWant", "true")
        git(work, "push", "-q", str(github.git_dir), "main")
        # GitHub serves any commit of the repository by SHA (checkout fetches the merge by SHA).
        git(github.git_dir, "config", "uploadpack.allowAnySHA1InWant", "true")
        try:
            runner = Runner(root=tmp_path / "runner", github=github, cache=act_cache)
        except RunnerUnavailable as exc:
            unavailable(str(exc))
        yield Project(github=github, runner=runner, work=work, tmp=tmp_path)
        assert github.refused == [], f"a workflow tried to reach {github.refused}"


def failure_context(result: ActResult, github: GitHubStandIn) -> str:
    calls = "\n".join(f"{r.method} {r.path} -> {r.status}" for r in github.requests)
    return f"{result.output[-6000:]}\n--- calls\n{calls}"


def change_learning_rate(value: str) -> Callable[[Path], None]:
    def edit(work: Path) -> None:
        set_param(work / "params.yaml", "learning_rate", value)

    return edit


def reproduce(edit: Callable[[Path], None]) -> Callable[[Path], None]:
    """`edit`, then `dvc repro`: the PR carries the dvc.lock and metrics it produces."""

    def both(work: Path) -> None:
        edit(work)
        run(["dvc", "repro", "-q"], work)

    return both


# --------------------------------------------------------------------------- pull requests


def test_fork_pr_with_hostile_title_and_branch(project: Project) -> None:
    """A fork's PR: the report is built and posted once, nothing it carries is executed, and
    the required check fails because the fork did not commit the dvc.lock its change needs."""
    sentinels = project.tmp / "sentinels"
    sentinels.mkdir()  # an injected `touch` would succeed: the check below can fail
    title = f'$(touch {sentinels}/title) `touch {sentinels}/tick` "; touch {sentinels}/quote; "'
    branch = f"x$(touch${{IFS}}{sentinels}/branch)"
    git(project.work, "check-ref-format", "--branch", branch)  # a name GitHub accepts
    event = project.pull_request(
        1,
        branch=branch,
        title=title,
        edit=change_learning_rate("0.2"),
        fork="mallory/ml-project",
        message=title,
    )
    event["action"] = "opened"
    refs_before = project.github.refs()

    result = project.run_pr(event, run_id=101)

    context = failure_context(result, project.github)
    assert result.outcome("Reproduce the pipeline", "Retrain, evaluate, report") == "success", (
        context
    )
    assert result.outcome("Upload the report for pr-comment.yml") == "success", context
    assert result.outcome(GATE) == "failure", context
    assert "dvc.lock is stale" in result.output
    assert result.returncode != 0  # the required check is red
    assert list(sentinels.iterdir()) == []
    artifact = project.artifact(101)
    assert artifact["pr-number"].strip() == "1"
    assert artifact["head-sha"].strip() == project.github.pulls[1].head_sha
    assert "`train.kwargs.learning_rate`" in artifact["report.md"]
    assert "is stale" in artifact["report.md"]
    # Read-only: a fork's run writes nothing anywhere.
    assert project.github.refs() == refs_before
    assert project.github.git_calls("git-receive-pack") == []
    assert [r for r in project.github.requests if r.method != "GET" and r.kind == "rest"] == []
    assert result.ran_job(REPORT_JOB)
    assert not result.ran_job("Commit dvc.lock and metrics to the PR branch")

    # The privileged half posts it: exactly one comment, updated in place on a re-run.
    for run_id in (201, 202):
        posted = project.run_comment(run_id, triggering=101)
        assert posted.returncode == 0, failure_context(posted, project.github)
    comments = list(project.github.comments.values())
    assert len(comments) == 1
    assert comments[0].issue == 1
    assert comments[0].user == project.github.bot
    assert "<!-- ml-gitops-report -->" in comments[0].body
    assert "`train.kwargs.learning_rate`" in comments[0].body
    assert len(project.github.rest_calls("POST", r"/issues/1/comments$")) == 1
    assert len(project.github.rest_calls("PATCH", r"/issues/comments/\d+$")) == 1
    assert list(sentinels.iterdir()) == []
    assert all(r.token == project.github.token for r in project.github.rest_calls())
    assert project.github.unknown_calls() == []
    assert not sentinels.exists() or not any(sentinels.iterdir())


def test_same_repo_pr_with_no_secrets(project: Project) -> None:
    """The default: the PR commits its own dvc.lock, its head gets the report comment and a
    green required check, and CI pushes nothing (write-back is off without its token)."""
    event = project.pull_request(
        2,
        branch="feature/learning-rate",
        title="Lower the learning rate",
        edit=reproduce(change_learning_rate("0.05")),
    )
    branch_before = project.github.commit_of("refs/heads/feature/learning-rate")

    result = project.run_pr(event, run_id=111)

    context = failure_context(result, project.github)
    assert result.returncode == 0, context
    assert result.outcome(GATE) == "success"
    assert "Write-back::off (no WRITEBACK_TOKEN secret)" in result.output
    assert result.outcome("Commit and push dvc.lock and metrics") in (None, "skipped")
    assert project.github.git_calls("git-receive-pack") == []
    assert project.github.commit_of("refs/heads/feature/learning-rate") == branch_before
    # The required check ran on the commit that will be merged: the PR's own head.
    assert project.artifact(111)["head-sha"].strip() == branch_before

    posted = project.run_comment(211, triggering=111)
    assert posted.returncode == 0, failure_context(posted, project.github)
    [comment] = project.github.comments.values()
    assert comment.issue == 2
    assert "`dvc.lock` is up to date" in comment.body
    merge = project.github.commit_of("refs/pull/2/merge")
    assert f"workspace at {merge[:7]}" in comment.body  # GitHub's merge commit, checked out

    # The promotion check applies to registry edits only: its job is skipped (a skipped job
    # passes a required check), it makes no report, and its workflow_run posts nothing.
    promotion = project.runner.run(
        "promotion.yml", "pull_request", event, sha=merge, ref="refs/pull/2/merge", run_id=112
    )
    assert promotion.returncode == 0, failure_context(promotion, project.github)
    assert promotion.outcome("List what the PR changes") == "success"
    assert promotion.ran_job("Which checks this PR needs")
    assert not promotion.ran_job("Judge the promotion against the stage policy")
    assert not (project.runner.artifacts / "112").exists()
    nothing = project.run_comment(212, triggering=112, name="Promotion check", head=branch_before)
    assert nothing.returncode == 0, failure_context(nothing, project.github)
    assert "made no pr-report artifact" in nothing.output
    assert len(project.github.comments) == 1


def test_same_repo_pr_with_writeback_token(project: Project) -> None:
    """With WRITEBACK_TOKEN the bot commits dvc.lock to the branch with that token; the new
    head's run is the required check and the only one that posts."""
    project.github.extra_tokens[PAT] = "maintainer"
    # The write-back job passes the branch name to the shell (HEAD_REF): make it hostile.
    sentinels = project.tmp / "sentinels"
    sentinels.mkdir()
    branch = f"feature/no-lock$(touch${{IFS}}{sentinels}/branch)"
    event = project.pull_request(
        3,
        branch=branch,
        title="Change the learning rate, no lock",
        edit=change_learning_rate("0.08"),
    )
    first_head = event["pull_request"]["head"]["sha"]

    first = project.run_pr(event, run_id=121, secrets={"WRITEBACK_TOKEN": PAT})

    context = failure_context(first, project.github)
    assert first.outcome(GATE) == "failure", context
    assert first.outcome("Commit and push dvc.lock and metrics") == "success", context
    pushes = project.github.git_calls("git-receive-pack")
    assert pushes
    assert all(p.token == PAT for p in pushes if p.status == 200)
    new_head = project.github.commit_of(f"refs/heads/{branch}")
    assert list(sentinels.iterdir()) == []
    assert new_head != first_head
    assert git(project.github.git_dir, "log", "-1", "--format=%an %P", new_head) == (
        f"github-actions[bot] {first_head}"
    )
    changed = git(project.github.git_dir, "diff", "--name-only", first_head, new_head)
    assert "dvc.lock" in changed.splitlines()

    # GitHub starts a run for the token's push: its head is the bot commit.
    second = project.run_pr(
        project.synchronize(3, new_head), run_id=122, secrets={"WRITEBACK_TOKEN": PAT}
    )
    assert second.returncode == 0, failure_context(second, project.github)
    assert "head commit is by github-actions[bot]" in second.output
    assert len(project.github.git_calls("git-receive-pack")) == len(pushes)  # no loop

    stale = project.run_comment(221, triggering=121)
    assert stale.returncode == 0, failure_context(stale, project.github)
    assert "Stale report" in stale.output
    assert project.github.comments == {}
    fresh = project.run_comment(222, triggering=122)
    assert fresh.returncode == 0, failure_context(fresh, project.github)
    [comment] = project.github.comments.values()
    assert comment.issue == 3
    assert "`dvc.lock` is up to date" in comment.body
    # The posted report is the new head's: its merge commit is what the second run checked out.
    assert project.github.commit_of("refs/pull/3/head") == new_head
    assert f"workspace at {project.github.commit_of('refs/pull/3/merge')[:7]}" in comment.body


# --------------------------------------------------------------------------- registry


def tags(github: GitHubStandIn, prefix: str) -> dict[str, str]:
    return {
        ref.removeprefix("refs/tags/"): sha
        for ref, sha in github.refs().items()
        if ref.startswith(f"refs/tags/{prefix}")
    }


def test_push_to_main_registers_one_version(project: Project) -> None:
    main = project.github.commit_of("refs/heads/main")
    parent = git(project.github.git_dir, "rev-parse", f"{main}^")

    result = project.run_push("register.yml", run_id=301, before=parent)

    assert result.returncode == 0, failure_context(result, project.github)
    versions = tags(project.github, f"{MODEL}@")
    assert list(versions) == [f"{MODEL}@v0.1.0"], versions
    assert project.github.commit_of(f"refs/tags/{MODEL}@v0.1.0") == main
    pushes = [p for p in project.github.git_calls("git-receive-pack") if p.status == 200]
    assert pushes
    assert all(p.token == project.github.token for p in pushes)
    record = json.loads(project.github.tag_message(f"{MODEL}@v0.1.0"))
    assert record["model_md5"] == lock_outs(project.work, "main")["models/model.skops"]

    again = project.run_push("register.yml", run_id=302, before=parent)
    assert again.returncode == 0, failure_context(again, project.github)
    assert list(tags(project.github, f"{MODEL}@")) == [f"{MODEL}@v0.1.0"]


def test_promotion_pr_then_merge_creates_the_stage_tag(project: Project) -> None:
    # A registered version (what register.yml does on main, tested above) whose model bytes are
    # in the DVC remote the repository variable names (what pr.yml's push job does).
    run(["python", "-m", "pipeline", "register"], project.work)
    project.push("main", "--tags")
    [version] = tags(project.github, f"{MODEL}@")
    remote = project.tmp / "dvc-remote"
    run(["dvc", "remote", "add", "--local", "--force", "storage", str(remote)], project.work)
    run(["dvc", "push", "-q", "train"], project.work)
    variables = {"DVC_REMOTE_URL": str(remote)}

    def promote(work: Path) -> None:
        run(
            ["python", "-m", "pipeline", "promote", version.split("@")[1], "--to", "production"],
            work,
        )

    event = project.pull_request(
        4, branch="promote/production", title="Promote to production", edit=promote
    )
    merge = project.github.commit_of("refs/pull/4/merge")
    # A registry-only PR skips the retraining report (passing its required check, unlike a
    # workflow left out by a path filter) and its workflow_run posts nothing.
    report = project.run_pr(event, run_id=400)
    assert report.returncode == 0, failure_context(report, project.github)
    assert report.ran_job("Which checks this PR needs")
    assert not report.ran_job(REPORT_JOB)
    nothing = project.run_comment(399, triggering=400, head=project.github.pulls[4].head_sha)
    assert nothing.returncode == 0, failure_context(nothing, project.github)
    assert "made no pr-report artifact" in nothing.output

    check = project.runner.run(
        "promotion.yml", "pull_request", event, sha=merge, ref="refs/pull/4/merge", run_id=401,
        variables=variables,
    )  # fmt: skip
    assert check.returncode == 0, failure_context(check, project.github)
    assert (
        "| ✅ | `model_bytes` | models/model.skops matches md5"
        in project.artifact(401)["report.md"]
    )
    posted = project.run_comment(402, triggering=401, name="Promotion check")
    assert posted.returncode == 0, failure_context(posted, project.github)
    [comment] = project.github.comments.values()
    assert "ml-gitops-promotion" in comment.body

    # Merged after an approving review: main moves to the merge commit.
    before = project.github.commit_of("refs/heads/main")
    project.push(f"{merge}:refs/heads/main")
    pr = project.github.pulls[4]
    pr.merged_at, pr.merge_commit_sha = "2026-12-01T12:00:00Z", merge
    project.github.reviews[4] = [{"user": {"login": "alice"}, "state": "APPROVED"}]

    result = project.run_push("reconcile.yml", run_id=403, before=before, variables=variables)

    assert result.returncode == 0, failure_context(result, project.github)
    stage_tags = tags(project.github, f"{MODEL}#production#")
    assert list(stage_tags) == [f"{MODEL}#production#1"], stage_tags
    assert project.github.commit_of(f"refs/tags/{MODEL}#production#1") == (
        project.github.commit_of(f"refs/tags/{version}")
    )
    record = json.loads(project.github.tag_message(f"{MODEL}#production#1"))
    assert str(record["pr"]) == "4"
    assert record["approver"] == "alice"
    assert record["version"] == version.split("@")[1]
    assert record["model_artifact"]["verified"] is True  # fetched from the remote, then checked
    policy = git(project.github.git_dir, "show", f"{merge}:policies/promotion.yaml")
    assert record["policy"]["sha256"] == hashlib.sha256((policy + "\n").encode()).hexdigest()
    metrics = json.loads(git(project.github.git_dir, "show", f"{merge}:models/metrics.json"))
    assert record["metrics"] == metrics
    assert f"Created tags: `{MODEL}#production#1`" in result.output
    assert project.github.rest_calls("GET", rf"/commits/{merge}/pulls$")
    # The real gto reads the registry from a clone of the remote.
    clone = project.tmp / "clone"
    git(project.tmp, "clone", "-q", str(project.github.git_dir), str(clone))
    shown = json.loads(run(["gto", "show", "--json"], clone).stdout)[MODEL]
    assert shown["version"] == version.split("@")[1]
    assert shown["stage"]["production"] == version.split("@")[1]
    history = json.loads(run(["gto", "history", MODEL, "--json"], clone).stdout)
    assert {e["event"] for e in history} == {"registration", "assignment"}


def test_promotion_pr_of_a_worse_model_fails_its_check(project: Project) -> None:
    """A model that fails the production policy: the report says which rule, the required
    check fails, the comment still explains it, and nothing is tagged."""
    run(["python", "-m", "pipeline", "register"], project.work)

    def worse(work: Path) -> None:  # an overconfident, overfitted model: log loss about 1.4
        set_param(work / "params.yaml", "max_iter", "300")
        set_param(work / "params.yaml", "learning_rate", "0.5")
        run(["dvc", "repro", "-q"], work)

    git(project.work, "checkout", "-q", "-b", "worse")
    worse(project.work)
    git(project.work, "commit", "-q", "-am", "a worse model")
    run(["python", "-m", "pipeline", "register"], project.work)
    git(project.work, "checkout", "-q", "main")
    git(project.work, "merge", "-q", "--ff-only", "worse")
    project.push("main", "--tags")
    worse_version = max(tags(project.github, f"{MODEL}@")).split("@")[1]
    tags_before = tags(project.github, "")

    def promote(work: Path) -> None:
        run(["python", "-m", "pipeline", "promote", worse_version, "--to", "production"], work)

    event = project.pull_request(5, branch="promote/worse", title="Promote", edit=promote)
    merge = project.github.commit_of("refs/pull/5/merge")
    check = project.runner.run(
        "promotion.yml", "pull_request", event, sha=merge, ref="refs/pull/5/merge", run_id=451
    )

    assert check.returncode != 0
    assert check.outcome("Upload the report for pr-comment.yml") == "success"
    assert check.outcome("Fail when the policy failed (this is the required check)") == "failure"
    report = project.artifact(451)["report.md"]
    assert "### Promotion policy `production`: ❌ failed" in report
    assert "❌ | `absolute:log_loss`" in report
    # no DVC remote configured: the model bytes cannot be checked, and the policy fails closed
    assert "| ❌ | `model_bytes` | models/model.skops (md5 " in report
    posted = project.run_comment(452, triggering=451, name="Promotion check")
    assert posted.returncode == 0, failure_context(posted, project.github)
    [comment] = project.github.comments.values()
    assert "❌ failed" in comment.body
    assert tags(project.github, "") == tags_before


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"pr-number": "1;id\n"}, "pr-number is not a number"),
        ({"head-sha": "0" * 40 + "\n"}, "head-sha is not the triggering run's SHA"),
        ({"pr-number": "7\n"}, "cannot read pull request 7"),
        ({"pr-number": "2\n"}, "is not a commit of pull request 2"),
        ({"report.md": None}, "report.md missing or not a regular file"),
        ({"report.md": "x" * 65001}, "report.md is too large"),
    ],
)
def test_tampered_artifact_posts_nothing(
    project: Project, files: dict[str, str | None], message: str
) -> None:
    """pr-comment.yml treats the artifact as hostile: each tampering fails the job, no call
    writes anything, no comment exists."""
    head = project.sha("main")
    project.github.open_pull(
        1, title="t", head_ref="x", head_sha=head, base_ref="main", head_repo="m/x"
    )
    # Another open PR, whose head the artifact's SHA never was.
    project.github.open_pull(
        2, title="u", head_ref="y", head_sha=project.sha("main^"), base_ref="main", head_repo="m/y"
    )
    artifact = {"report.md": "<!-- ml-gitops-report -->\nok\n", "pr-number": "1\n",
                "head-sha": head + "\n"}  # fmt: skip
    artifact.update(files)
    zip_path = project.runner.artifacts / "601" / "pr-report" / "pr-report.zip"
    zip_path.parent.mkdir(parents=True)
    with zipfile.ZipFile(zip_path, "w") as archive:
        for name, text in artifact.items():
            if text is not None:
                archive.writestr(name, text)

    result = project.run_comment(602, triggering=601, head=head)

    assert result.returncode != 0
    assert message in result.output
    assert project.github.comments == {}
    assert [r for r in project.github.requests if r.method != "GET"] == []


def test_untampered_artifact_is_posted(project: Project) -> None:
    """The same hand-made artifact, untampered, is posted: the checks above refuse for their
    reason, not for any artifact."""
    head = project.sha("main")
    project.github.open_pull(
        1, title="t", head_ref="x", head_sha=head, base_ref="main", head_repo="m/x"
    )
    zip_path = project.runner.artifacts / "611" / "pr-report" / "pr-report.zip"
    zip_path.parent.mkdir(parents=True)
    with zipfile.ZipFile(zip_path, "w") as archive:
        archive.writestr(
            "report.md",
            "<!-- ml-gitops-report -->\nhand-made: `@acme/owners` and @alice, see #12 and "
            "acme/other#3; mail ops@example.com; &#35;\n",
        )
        archive.writestr("pr-number", "1\n")
        archive.writestr("head-sha", head + "\n")

    result = project.run_comment(612, triggering=611, head=head)

    assert result.returncode == 0, failure_context(result, project.github)
    [comment] = project.github.comments.values()
    assert "hand-made" in comment.body
    # Nothing in the posted text can notify or cross-reference anyone; it reads the same.
    wj = "\u2060"
    assert f"`@{wj}acme/owners` and @{wj}alice, see #{wj}12 and acme/other#{wj}3" in comment.body
    assert "mail ops@example.com; &#35;" in comment.body
    report = comment.body.split("![](https://cml.dev/watermark.png#")[0]  # CML's own link
    assert re.search(r"(^|[^\w])@[\w-]", report) is None
    assert re.search(r"#\d", report.replace("&#35;", "")) is None


# --------------------------------------------------------------------------- monitoring


def test_scheduled_monitor_opens_one_retraining_pr(project: Project) -> None:
    """A drifted, labelled production batch on main: the schedule opens ONE retraining PR
    (branch pushed, PR created); the next schedule finds it open and opens none."""
    secrets = {"RETRAIN_PR_TOKEN": PAT}
    project.github.extra_tokens[PAT] = "maintainer"
    event = {"schedule": "17 6 * * *", "repository": project.repository()}
    clean = project.work / "data" / "production" / "2026-11-29.parquet"
    run(
        ["python", "-m", "pipeline", "generate", "--output", clean, "--rows", "2000",
         "--seed", "301"],
        project.work,
    )  # fmt: skip
    git(project.work, "add", "-A")
    git(project.work, "commit", "-q", "-m", "production batch 2026-11-29")
    project.push("HEAD:refs/heads/main")
    quiet = project.runner.run(
        "monitor.yml", "schedule", event, sha=project.sha(), ref="refs/heads/main", run_id=500,
        secrets=secrets,
    )  # fmt: skip
    assert quiet.returncode == 0, failure_context(quiet, project.github)
    assert "Monitoring report: ✅ no breach" in quiet.output
    assert quiet.ran_job("Check the newest production batch")
    assert not quiet.ran_job("Open a retraining pull request")
    assert project.github.rest_calls("POST") == []

    batch = project.work / "data" / "production" / "2026-11-30.parquet"
    run(
        ["python", "-m", "pipeline", "generate", "--output", batch, "--rows", "2000",
         "--seed", "309", "--prior-shift", "1.5"],
        project.work,
    )  # fmt: skip
    git(project.work, "add", "-A")
    git(project.work, "commit", "-q", "-m", "production batch 2026-11-30")
    project.push("HEAD:refs/heads/main")
    main = project.sha()

    first = project.runner.run(
        "monitor.yml", "schedule", event, sha=main, ref="refs/heads/main", run_id=501,
        secrets=secrets,
    )  # fmt: skip

    assert first.returncode == 0, failure_context(first, project.github)
    created = project.github.rest_calls("POST", r"/pulls$")
    assert len(created) == 1, failure_context(first, project.github)
    assert created[0].token == PAT
    assert created[0].body["head"] == "retrain/2026-11-30"
    assert "breach" in created[0].body["body"]
    branch = project.github.commit_of("refs/heads/retrain/2026-11-30")
    files = git(project.github.git_dir, "diff", "--name-only", main, branch).splitlines()
    assert "dvc.lock" in files
    assert "data/extra/2026-11-30.parquet.dvc" in files

    second = project.runner.run(
        "monitor.yml", "schedule", event, sha=main, ref="refs/heads/main", run_id=502,
        secrets=secrets,
    )  # fmt: skip
    assert second.returncode == 0, failure_context(second, project.github)
    assert "one is already open" in second.output
    assert len(project.github.rest_calls("POST", r"/pulls$")) == 1
    assert project.github.commit_of("refs/heads/retrain/2026-11-30") == branch
