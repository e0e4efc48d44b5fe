"""The git model registry: GTO-format tags are the state, models/registry.yaml the desired state.

- versions: annotated tags `<model>@vX.Y.Z` on the commit whose dvc.lock pins the model;
- stage assignments: annotated tags `<model>#<stage>#N` (unassignments `<model>#<stage>!#N`),
  N one more than the largest counter of the model, exactly as `gto assign` names them;
- a canary of stage S is the GTO stage `S-canary`; its traffic percent is in the audit record;
- every stage tag's message is the audit record (canonical JSON), so the history is as
  immutable as the tags and `gto history` shows it.

GTO orders events by the tagger time, which has one-second resolution; tags made here get a
time strictly after every earlier tag of the model, so GTO's order is the order of creation.
Creating tags happens under a lock file in the git directory, and `git tag` itself refuses
an existing name, so two reconciles at once make one stage tag.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path
from typing import Any

from gto.constants import name_re, tag_re
from gto.tag import parse_name

from pipeline.config import Params, build, frozen, load_document, parse_yaml
from pipeline.errors import CheckFailed, ConfigError, InputError, UsageError
from pipeline.io import dumps_json, write_text

CANARY_SUFFIX = "-canary"
FIRST_VERSION = "v0.1.0"
VERSION_RE = re.compile(r"^v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
# Stricter than GTO's name: no "/" either, so a stage name is always one path segment.
STAGE_RE = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9_-]*[a-zA-Z0-9])?$")
_UNSAFE = re.compile(r"[\s;&|`$<>(){}\[\]*?!'\"\\~^:]")
LOCK_TIMEOUT_S = 300.0


# --------------------------------------------------------------------------- validation


def _check(value: str, what: str, pattern: re.Pattern[str]) -> str:
    problems = []
    if not isinstance(value, str) or not value:
        raise InputError(f"invalid {what}: empty")
    if ".." in value:
        problems.append("contains '..'")
    if _UNSAFE.search(value):
        problems.append("contains whitespace or a shell metacharacter")
    if not pattern.fullmatch(value):
        problems.append(f"does not match {pattern.pattern}")
    if problems:
        raise InputError(f"invalid {what} {value!r}: {', '.join(problems)}")
    return value


def validate_model(name: str) -> str:
    return _check(name, "model name", name_re)


def validate_version(version: str) -> str:
    return _check(version, "version", VERSION_RE)


def validate_stage(stage: str, *, allow_canary: bool = False) -> str:
    _check(stage, "stage", STAGE_RE)
    if not allow_canary and stage.endswith(CANARY_SUFFIX):
        raise InputError(f"invalid stage {stage!r}: '{CANARY_SUFFIX}' stages are made by canaries")
    return stage


def _checked_tag(tag: str, model: str) -> str:
    """Last gate before `git tag`: the name must be one GTO parses back to this model."""
    parsed = parse_name(tag, raise_on_fail=False)
    if not tag_re.fullmatch(tag) or not parsed or parsed.get("name") != model:
        raise InputError(f"refusing to create tag {tag!r}: not a GTO tag of {model!r}")
    if ".." in tag or _UNSAFE.sub("", tag.replace("!", "")) != tag.replace("!", ""):
        raise InputError(f"refusing to create tag {tag!r}: unsafe characters")
    return tag


# --------------------------------------------------------------------------- git


def _git(
    repo: Path,
    *args: str,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
) -> str:
    proc = subprocess.run(
        ["git", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        input=stdin,
        env={**os.environ, **env} if env else None,
    )
    if check and proc.returncode != 0:
        raise InputError(f"git {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout if proc.returncode == 0 else ""


def _git_bytes(repo: Path, rev: str, path: str) -> bytes | None:
    proc = subprocess.run(
        ["git", "show", f"{rev}:{path}"], cwd=repo, capture_output=True, check=False, timeout=300
    )
    return proc.stdout if proc.returncode == 0 else None


def resolve_commit(repo: Path, rev: str) -> str:
    if not rev or rev.startswith("-") or any(c.isspace() for c in rev):
        raise InputError(f"{rev!r} is not a commit")
    out = _git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", check=False)
    if not out.strip():
        raise InputError(f"{rev!r} is not a commit in {repo}")
    return out.strip()


@contextlib.contextmanager
def registry_lock(repo: Path, timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Serialize registry writers on this clone (CI serializes runs with `concurrency`)."""
    common = Path(_git(repo, "rev-parse", "--git-common-dir").strip())
    path = (repo / common if not common.is_absolute() else common) / "ml-registry.lock"
    deadline = time.monotonic() + timeout
    with path.open("a+") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise UsageError(f"registry lock {path} held for over {timeout:.0f}s") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- state from tags


@dataclass(frozen=True)
class TagEvent:
    tag: str
    action: str  # "register" | "deregister" | "assign" | "unassign"
    commit: str
    time: int
    counter: int
    version: str | None
    stage: str | None
    message: str


@dataclass(frozen=True)
class RegistryState:
    model: str
    events: tuple[TagEvent, ...]  # GTO order: tagger time, then counter
    versions: Mapping[str, TagEvent] = field(default_factory=dict)  # active registrations

    def version_at(self, commit: str) -> str | None:
        found = [v for v, e in self.versions.items() if e.commit == commit]
        return found[0] if len(found) == 1 else None

    def stage_events(self, stage: str) -> list[tuple[TagEvent, str]]:
        out = []
        for e in self.events:
            if e.stage == stage and e.action in ("assign", "unassign"):
                version = self.version_at(e.commit)
                if version:
                    out.append((e, version))
        return out

    def holder(self, stage: str) -> str | None:
        """The version GTO shows in `stage` (latest active assignment, timestamp order)."""
        active: dict[str, int] = {}
        for i, (e, version) in enumerate(self.stage_events(stage)):
            if e.action == "assign":
                active[version] = i
            else:
                active.pop(version, None)
        return max(active, key=lambda v: active[v]) if active else None

    def previous_holders(self, stage: str) -> list[str]:
        """Versions that held `stage` before its current holder, most recent first."""
        current = self.holder(stage)
        seen: list[str] = []
        for e, version in reversed(self.stage_events(stage)):
            if e.action == "assign" and version != current and version not in seen:
                seen.append(version)
        return seen

    def canary(self, stage: str) -> tuple[str, int] | None:
        """(version, percent) of the active canary of `stage`, from its audit record."""
        canary_stage = stage + CANARY_SUFFIX
        version = self.holder(canary_stage)
        if version is None:
            return None
        for e, v in reversed(self.stage_events(canary_stage)):
            if v == version and e.action == "assign":
                record = parse_record(e.message) or {}
                percent = record.get("canary_percent")
                return version, int(percent) if isinstance(percent, int) else 0
        return None

    def latest_version(self) -> str | None:
        if not self.versions:
            return None
        return max(self.versions, key=_semver_key)

    def version_of_ref(self, repo: Path, ref: str) -> str | None:
        if ref in self.versions:
            return ref
        return self.version_at(resolve_commit(repo, ref))

    def next_counter(self) -> int:
        return max((e.counter for e in self.events), default=0) + 1

    def next_time(self) -> int:
        return max([int(time.time()), *(e.time + 1 for e in self.events)])


def _semver_key(version: str) -> tuple[int, int, int]:
    match = VERSION_RE.fullmatch(version)
    if not match:
        return (-1, -1, -1)
    return int(match[1]), int(match[2]), int(match[3])


def parse_record(message: str) -> dict[str, Any] | None:
    try:
        loaded = json.loads(message)
    except json.JSONDecodeError:
        return None
    return loaded if isinstance(loaded, dict) else None


def read_state(repo: Path, model: str) -> RegistryState:
    """Every annotated GTO tag of `model`, parsed with GTO's own tag grammar."""
    validate_model(model)
    fmt = (
        "%(refname:strip=2)%00%(objecttype)%00%(*objectname)%00%(taggerdate:unix)"
        "%00%(contents)%00%00"
    )
    raw = _git(repo, "for-each-ref", "refs/tags", f"--format={fmt}")
    events = []
    for record in raw.split("\0\0\n"):
        if not record.strip("\n"):
            continue
        name, objtype, target, when, message = record.lstrip("\n").split("\0", 4)
        parsed = parse_name(name, raise_on_fail=False)
        if objtype != "tag" or not parsed or parsed.get("name") != model:
            continue  # GTO ignores lightweight tags too
        action = parsed.get("action")
        events.append(
            TagEvent(
                tag=name,
                action=getattr(action, "value", str(action)),
                commit=target,
                time=int(when or 0),
                counter=int(parsed.get("counter", 0)),
                version=parsed.get("version"),
                stage=parsed.get("stage"),
                message=message.strip(),
            )
        )
    events.sort(key=lambda e: (e.time, e.counter))
    versions: dict[str, TagEvent] = {}
    for e in events:
        if e.action == "register" and e.version:
            versions[e.version] = e
        elif e.action == "deregister" and e.version:
            versions.pop(e.version, None)
    return RegistryState(model=model, events=tuple(events), versions=versions)


def _create_tag(
    repo: Path, state: RegistryState, tag: str, commit: str, record: Mapping[str, Any]
) -> str:
    _checked_tag(tag, state.model)
    when = state.next_time()
    # `git tag` refuses an existing name atomically (ref lock), the second line of defence.
    _git(
        repo,
        "tag",
        "--annotate",
        "--cleanup=verbatim",
        "--file=-",
        tag,
        commit,
        stdin=dumps_json(dict(record)),
        env={"GIT_COMMITTER_DATE": f"{when} +0000"},
    )
    return tag


def server_url() -> str:
    """The GitHub server the workflow runs on (GITHUB_SERVER_URL), without a trailing slash."""
    return (os.environ.get("GITHUB_SERVER_URL") or "https://github.com").rstrip("/")


def push_tags(repo: Path, tags: Sequence[str], remote: str = "origin") -> None:
    """Push the new tags in one atomic push; a token in REGISTRY_PUSH_TOKEN is sent as a header.

    The token goes through GIT_CONFIG_* variables, so it is never on a command line or in
    .git/config (checkout runs with persist-credentials: false).
    """
    if not tags:
        return
    env: dict[str, str] = {}
    token = os.environ.get("REGISTRY_PUSH_TOKEN", "")
    if token:
        import base64

        basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        env = {
            "GIT_CONFIG_COUNT": "1",
            # Scoped to the server the workflow runs on (GitHub Enterprise too), as
            # actions/checkout scopes its own header.
            "GIT_CONFIG_KEY_0": f"http.{server_url()}/.extraheader",
            "GIT_CONFIG_VALUE_0": f"AUTHORIZATION: basic {basic}",
        }
    _git(repo, "push", "--atomic", remote, *(f"refs/tags/{t}" for t in tags), env=env)


# --------------------------------------------------------------------------- dvc.lock facts


def lock_outs(repo: Path, rev: str) -> dict[str, str]:
    """{path: md5} of every output in dvc.lock at `rev` ({} without a lock)."""
    text = _git(repo, "show", f"{rev}:dvc.lock", check=False)
    if not text:
        return {}
    from pipeline.report import lock_outputs  # the one reader of dvc.lock outputs

    lock = parse_yaml(text, f"{rev}:dvc.lock")
    return {path: md5 for path, (_, md5) in lock_outputs(lock).items() if md5}


def verify_model(
    repo: Path, rev: str, model_path: str, artifact: Path | None = None
) -> dict[str, Any]:
    """The model md5 that dvc.lock pins at `rev`, checked against `artifact` when given, else
    against the DVC cache entry of that md5, for the audit record.

    Bytes that differ raise CheckFailed. Absent bytes are recorded as unverified: the policy's
    model_bytes rule has already refused them unless the stage opts out (require_verified_model).
    """
    from pipeline.policy import model_bytes

    md5 = lock_outs(repo, rev).get(model_path)
    if not md5:
        raise CheckFailed(f"{rev}: dvc.lock pins no {model_path}", [f"{rev}: no model md5"])
    ok, detail, checked = model_bytes(repo, md5, model_path, [artifact] if artifact else [], rev)
    if ok is False:
        raise CheckFailed(f"model artifact does not match dvc.lock at {rev}", [detail])
    found = str(checked) if checked else None
    return {"path": model_path, "md5": md5, "verified": ok is True, "artifact": found}


# --------------------------------------------------------------------------- register


@dataclass(frozen=True)
class Registered:
    tag: str | None
    version: str | None
    reason: str


def bump(version: str | None, part: str) -> str:
    if version is None:
        return FIRST_VERSION
    major, minor, patch = _semver_key(version)
    if part == "major":
        return f"v{major + 1}.0.0"
    if part == "minor":
        return f"v{major}.{minor + 1}.0"
    return f"v{major}.{minor}.{patch + 1}"


def register(
    params: Params,
    repo: Path,
    *,
    rev: str = "HEAD",
    part: str = "minor",
    version: str | None = None,
) -> Registered:
    """Tag a new version at `rev` when the model pinned by its dvc.lock changed."""
    model = validate_model(params.project.model)
    if version is not None:
        validate_version(version)
    commit = resolve_commit(repo, rev)
    with registry_lock(repo):
        state = read_state(repo, model)
        md5 = lock_outs(repo, commit).get(params.paths.model)
        if not md5:
            return Registered(None, None, f"dvc.lock at {rev} pins no {params.paths.model}")
        existing = state.version_at(commit)
        if existing:
            return Registered(None, existing, f"{commit[:12]} is already {model}@{existing}")
        latest = state.latest_version()
        if latest and lock_outs(repo, state.versions[latest].commit).get(params.paths.model) == md5:
            return Registered(None, latest, f"model unchanged since {model}@{latest} (md5 {md5})")
        new = version or bump(latest, part)
        if new in state.versions or _git(repo, "tag", "--list", f"{model}@{new}").strip():
            raise InputError(f"{model}@{new} already exists")
        if latest and _semver_key(new) <= _semver_key(latest):
            raise InputError(f"{new} is not above the latest version {latest}")
        outs = lock_outs(repo, commit)
        record = {
            "action": "register",
            "model": model,
            "version": new,
            "commit": commit,
            "model_md5": md5,
            "data": {p: outs[p] for p in _data_paths(params) if p in outs},
        }
        tag = _create_tag(repo, state, f"{model}@{new}", commit, record)
    return Registered(tag, new, f"registered {tag} at {commit[:12]}")


def _data_paths(params: Params) -> tuple[str, ...]:
    return (params.paths.raw, params.paths.train, params.paths.test)


# --------------------------------------------------------------------------- desired state


@frozen
class Canary:
    version: str
    percent: int


@frozen
class StageSpec:
    version: str
    canary: Canary | None = None


@frozen
class Desired:
    stages: Mapping[str, StageSpec]


def load_desired(path: str | Path) -> Desired:
    """models/registry.yaml, schema-validated, every stage and version name checked."""
    doc = load_document(path, "registry")
    problems = []
    for stage, spec in sorted(doc["stages"].items()):
        try:
            validate_stage(stage)
        except InputError as exc:
            problems.append(f"{path}: stages.{stage}: {exc}")
        canary = spec.get("canary")
        if canary and canary["version"] == spec["version"]:
            problems.append(f"{path}: stages.{stage}.canary: same version as the stage")
    if problems:
        raise ConfigError(problems)
    return build(Desired, doc)


def _yaml_rt() -> Any:
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.version = (1, 2)
    yaml.explicit_start = False
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def edit_desired(text: str, stage: str, version: str, canary_percent: int | None) -> str:
    """registry.yaml text with `stage` pointed at `version` (or its canary), comments kept."""
    from ruamel.yaml.comments import CommentedMap

    yaml = _yaml_rt()
    doc = yaml.load(text) or CommentedMap()
    if doc.get("stages") is None:
        doc["stages"] = CommentedMap()
    stages = doc["stages"]
    entry = stages.get(stage)
    if canary_percent is not None:
        if entry is None:
            raise InputError(f"stage {stage!r} has no version yet: a canary needs a holder")
        if entry.get("version") == version:
            raise InputError(f"{version} already serves {stage}: nothing to canary")
        entry["canary"] = CommentedMap([("version", version), ("percent", canary_percent)])
    else:
        if entry is None:
            stages[stage] = CommentedMap([("version", version)])
        else:
            entry["version"] = version
            # A full promotion completes (same version) or supersedes (other) any canary.
            entry.pop("canary", None)
    out = StringIO()
    yaml.dump(doc, out)
    return out.getvalue().removeprefix("%YAML 1.2\n---\n")


def abort_canary(text: str, stage: str) -> str:
    yaml = _yaml_rt()
    doc = yaml.load(text)
    entry = (doc.get("stages") or {}).get(stage)
    if not entry or "canary" not in entry:
        raise InputError(f"stage {stage!r} has no canary to abort")
    del entry["canary"]
    out = StringIO()
    yaml.dump(doc, out)
    return out.getvalue().removeprefix("%YAML 1.2\n---\n")


@dataclass(frozen=True)
class Edit:
    stage: str
    version: str
    canary_percent: int | None
    description: str
    branch: str | None = None


def _check_branch(repo: Path, branch: str) -> None:
    """A new branch name git and a shell both take as it is; checked before anything is
    written, so a refused command leaves the tree exactly as it was."""
    if _git(repo, "check-ref-format", "--branch", branch, check=False).strip() != branch:
        raise InputError(f"invalid branch name {branch!r}")
    _check(branch.replace("/", "-"), "branch", re.compile(r"^[A-Za-z0-9._-]+$"))
    if _git(repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}", check=False):
        raise InputError(f"branch {branch!r} already exists")


def _apply_edit(repo: Path, registry_rel: str, text: str, edit: Edit) -> Edit:
    """Write the edited registry.yaml and, with a branch, commit it there. Every check runs
    first; if committing fails anyway, the file gets its old text back."""
    if edit.branch:
        _check_branch(repo, edit.branch)
    path = repo / registry_rel
    before = path.read_text("utf-8")
    _write_desired(path, text)
    if edit.branch:
        try:
            _git(repo, "switch", "--create", edit.branch)
            _git(repo, "add", "--", registry_rel)
            _git(repo, "commit", "--quiet", "--message", edit.description, "--", registry_rel)
        except Exception:
            write_text(path, before)
            raise
    return edit


def open_pull_request(repo: Path, edit: Edit, *, base: str, remote: str = "origin") -> str:
    """Push the edit's branch and open its pull request with the GitHub CLI; return gh's output.

    The promotion policy is not evaluated here: CI's "Promotion check" judges the PR against
    the base branch's policy, so nobody can promote by skipping a local step.
    """
    if edit.branch is None:
        raise InputError("--open-pr needs --branch (the pull request's head branch)")
    if shutil.which("gh") is None:
        raise InputError(
            f"gh (the GitHub CLI) is not installed: push {edit.branch!r} and open the PR yourself"
        )
    _git(repo, "push", "--quiet", "--set-upstream", remote, edit.branch)
    body = (
        f"{edit.description}.\n\nOpened by `python -m pipeline`. The Promotion check workflow "
        "evaluates the stage's policy against its current holder and comments here; merging "
        "this pull request is the release (reconcile creates the stage tag and audit record)."
    )
    args = ["gh", "pr", "create", "--base", base, "--head", edit.branch]
    proc = subprocess.run(
        [*args, "--title", edit.description, "--body", body],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise InputError(f"gh pr create failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout.strip()


def promote(
    params: Params,
    repo: Path,
    version: str,
    stage: str,
    *,
    canary_percent: int | None = None,
    branch: str | None = None,
) -> Edit:
    """Edit registry.yaml so `stage` serves `version` (or gives it a canary share)."""
    from pipeline.policy import load_policy, stage_policy

    validate_version(version)
    validate_stage(stage)
    if canary_percent is not None and not 1 <= canary_percent <= 99:
        raise InputError(f"canary percent must be within 1..99, got {canary_percent}")
    stage_policy(load_policy(repo / params.paths.promotion), stage)
    state = read_state(repo, validate_model(params.project.model))
    if version not in state.versions:
        known = ", ".join(sorted(state.versions, key=_semver_key)) or "none"
        raise InputError(f"{params.project.model}@{version} is not registered (versions: {known})")
    path = repo / params.paths.registry
    text = edit_desired(path.read_text("utf-8"), stage, version, canary_percent)
    what = f"canary {canary_percent}% of {stage}" if canary_percent else stage
    description = f"Promote {params.project.model}@{version} to {what}"
    edit = Edit(stage, version, canary_percent, description, branch)
    return _apply_edit(repo, params.paths.registry, text, edit)


def rollback(params: Params, repo: Path, stage: str, *, branch: str | None = None) -> Edit:
    """Abort the stage's canary if it has one, else point it at its previous holder."""
    validate_stage(stage)
    path = repo / params.paths.registry
    text = path.read_text("utf-8")
    desired = load_desired(path)
    spec = desired.stages.get(stage)
    model = params.project.model
    if spec is not None and spec.canary is not None:
        new_text = abort_canary(text, stage)
        description = f"Abort canary {model}@{spec.canary.version} of {stage}"
        edit = Edit(stage, spec.version, None, description, branch)
    else:
        state = read_state(repo, validate_model(model))
        previous = state.previous_holders(stage)
        if not previous:
            raise InputError(f"{stage}: no earlier version held this stage; nothing to roll back")
        new_text = edit_desired(text, stage, previous[0], None)
        description = (
            f"Roll back {stage} from {model}@{state.holder(stage)} to {model}@{previous[0]}"
        )
        edit = Edit(stage, previous[0], None, description, branch)
    return _apply_edit(repo, params.paths.registry, new_text, edit)


def _write_desired(path: Path, text: str) -> None:
    # Validate the edited document before it replaces the file: never write a bad state.
    problems = []
    try:
        from pipeline.config import violations

        problems = violations(parse_yaml(text, str(path)), "registry", str(path))
    except ConfigError as exc:
        problems = exc.violations
    if problems:
        raise ConfigError(problems)
    write_text(path, text)


# --------------------------------------------------------------------------- reconcile


@dataclass(frozen=True)
class Planned:
    action: str  # "assign" | "unassign"
    stage: str  # GTO stage (a canary is "<stage>-canary")
    version: str
    canary_percent: int | None = None
    previous: str | None = None
    verdict: Any = None  # pipeline.policy.Verdict for assignments

    @property
    def passed(self) -> bool:
        return self.verdict is None or bool(self.verdict.passed)


@dataclass(frozen=True)
class Reconciled:
    planned: tuple[Planned, ...]
    tags: tuple[str, ...]
    dry_run: bool

    @property
    def passed(self) -> bool:
        return all(p.passed for p in self.planned)


def plan(
    params: Params,
    repo: Path,
    state: RegistryState,
    desired: Desired,
    *,
    policy_rev: str | None = None,
    artifact: Path | None = None,
) -> list[Planned]:
    """What tags would make GTO match registry.yaml, each assignment judged by the policy
    (the working tree's policy file, or the one committed at `policy_rev`). The model bytes of
    each assigned version are checked in `artifact` when given, else in the DVC cache."""
    from pipeline import policy as pol

    rules = (
        pol.load_policy_at(repo, policy_rev, params.paths.promotion)
        if policy_rev
        else pol.load_policy(repo / params.paths.promotion)
    )
    dirs = pol.directions()
    planned: list[Planned] = []

    def bundle(version: str, *, candidate: bool = False) -> pol.Bundle:
        if version not in state.versions:
            raise InputError(f"{state.model}@{version} is not a registered version")
        tag = state.versions[version].tag
        given = artifact if candidate else None
        return pol.rev_bundle(params, repo, tag, version=version, artifact=given)

    for stage, spec in sorted(desired.stages.items()):
        stage_rules = pol.stage_policy(rules, stage)
        holder = state.holder(stage)
        if spec.version != holder:
            verdict = pol.evaluate(
                stage,
                stage_rules,
                bundle(spec.version, candidate=True),
                bundle(holder) if holder else None,
                dirs,
                rollback=spec.version in state.previous_holders(stage),
            )
            planned.append(Planned("assign", stage, spec.version, None, holder, verdict))
        current = state.canary(stage)
        want = (spec.canary.version, spec.canary.percent) if spec.canary else None
        if want == current:
            continue
        canary_stage = stage + CANARY_SUFFIX
        if current is not None and (want is None or want[0] != current[0]):
            planned.append(Planned("unassign", canary_stage, current[0], None, current[0]))
        if want is not None:
            verdict = pol.evaluate(
                canary_stage,
                stage_rules,
                bundle(want[0], candidate=True),
                bundle(spec.version),
                dirs,
            )
            prev = current[0] if current else None
            planned.append(Planned("assign", canary_stage, want[0], want[1], prev, verdict))
    return planned


def _audit_record(
    params: Params,
    repo: Path,
    state: RegistryState,
    item: Planned,
    *,
    pr: str | None,
    approver: str | None,
    artifact: Path | None,
) -> dict[str, Any]:
    from pipeline.policy import verdict_json

    version_tag = state.versions[item.version]
    policy_bytes = (repo / params.paths.promotion).read_bytes()
    outs = lock_outs(repo, version_tag.commit)
    metrics_text = _git(repo, "show", f"{version_tag.commit}:{params.paths.metrics}", check=False)
    record: dict[str, Any] = {
        "action": item.action,
        "model": state.model,
        "stage": item.stage,
        "version": item.version,
        "commit": version_tag.commit,
        "previous": item.previous,
        "canary_percent": item.canary_percent,
        "pr": pr or None,
        "approver": approver or None,
        "requested_by_commit": resolve_commit(repo, "HEAD"),
        "policy": {
            "path": params.paths.promotion,
            "sha256": hashlib.sha256(policy_bytes).hexdigest(),
        },
        "metrics": (parse_record(metrics_text) if metrics_text else None),
        "data": {p: outs[p] for p in _data_paths(params) if p in outs},
    }
    if item.action == "assign":
        record["model_artifact"] = verify_model(
            repo, version_tag.commit, params.paths.model, artifact
        )
        record["verdict"] = verdict_json(item.verdict)
    return record


def reconcile(
    params: Params,
    repo: Path,
    *,
    dry_run: bool = False,
    pr: str | None = None,
    approver: str | None = None,
    artifact: Path | None = None,
    push: bool = False,
    policy_rev: str | None = None,
) -> Reconciled:
    """Create the stage tags that make GTO match models/registry.yaml, with audit records.

    Refuses (CheckFailed, nothing tagged) when any planned assignment fails its policy or its
    model does not match dvc.lock. Runs under the registry lock and re-reads the tags inside
    it, so a concurrent reconcile that got there first leaves nothing to do.
    """
    model = validate_model(params.project.model)
    desired = load_desired(repo / params.paths.registry)
    if dry_run:
        state = read_state(repo, model)
        planned = plan(params, repo, state, desired, policy_rev=policy_rev, artifact=artifact)
        return Reconciled(tuple(planned), (), True)
    if policy_rev:
        raise UsageError("--policy-rev is for dry runs: tags are made under the merged policy")
    with registry_lock(repo):
        state = read_state(repo, model)
        planned = plan(params, repo, state, desired, artifact=artifact)
        failed = [p for p in planned if not p.passed]
        if failed:
            reasons = [f"{p.stage} <- {p.version}: {f}" for p in failed for f in p.verdict.failures]
            raise CheckFailed("promotion refused by policy; no tag created", reasons)
        records = [
            _audit_record(params, repo, state, p, pr=pr, approver=approver, artifact=artifact)
            for p in planned
        ]
        tags: list[str] = []
        for item, record in zip(planned, records, strict=True):
            bang = "!" if item.action == "unassign" else ""
            tag = f"{model}#{item.stage}{bang}#{state.next_counter()}"
            commit = state.versions[item.version].commit
            tags.append(_create_tag(repo, state, tag, commit, record))
            state = read_state(repo, model)
    if push:
        push_tags(repo, tags)
    return Reconciled(tuple(planned), tuple(tags), False)


def render_reconcile(result: Reconciled, fmt: str) -> str:
    from pipeline.policy import verdict_json, verdict_markdown

    if fmt == "json":
        payload = {
            "dry_run": result.dry_run,
            "passed": result.passed,
            "tags": list(result.tags),
            "planned": [
                {
                    "action": p.action,
                    "stage": p.stage,
                    "version": p.version,
                    "previous": p.previous,
                    "canary_percent": p.canary_percent,
                    "verdict": verdict_json(p.verdict) if p.verdict else None,
                }
                for p in result.planned
            ],
        }
        return json.dumps(payload, indent=2, sort_keys=True) + "\n"
    lines = ["## Model registry: promotion check" if result.dry_run else "## Model registry", ""]
    if not result.planned:
        lines.append("The registry already matches `models/registry.yaml`: nothing to do.")
    for p in result.planned:
        share = f" ({p.canary_percent}% canary)" if p.canary_percent else ""
        was = f" (was {p.previous})" if p.previous else " (first model of the stage)"
        verb = "unassign" if p.action == "unassign" else "assign"
        lines.append(
            f"- **{verb}** `{p.stage}` → `{p.version}`{share}{was if verb == 'assign' else ''}"
        )
    lines.append("")
    for p in result.planned:
        if p.verdict is not None:
            lines.append(verdict_markdown(p.verdict))
    if result.tags:
        lines.append("Created tags: " + ", ".join(f"`{t}`" for t in result.tags))
    return "\n".join(lines).rstrip() + "\n"


# --------------------------------------------------------------------------- audit


def audit(repo: Path, model: str) -> list[dict[str, Any]]:
    """Every stage event of `model`, oldest first, with its audit record and an integrity flag."""
    state = read_state(repo, model)
    out = []
    for e in state.events:
        if e.action not in ("assign", "unassign"):
            continue
        record = parse_record(e.message)
        version = state.version_at(e.commit)
        intact = (
            record is not None
            and record.get("stage") == e.stage
            and record.get("version") == version
            and record.get("commit") == e.commit
            and record.get("action") == e.action
        )
        out.append(
            {
                "tag": e.tag,
                "time": e.time,
                "action": e.action,
                "stage": e.stage,
                "version": version,
                "intact": intact,
                "record": record,
            }
        )
    return out


def render_audit(entries: Sequence[Mapping[str, Any]], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(list(entries), indent=2, sort_keys=True) + "\n"
    lines = [
        "| time (UTC) | tag | action | version | PR | approver | policy sha256 | intact |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        r = e["record"] or {}
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(e["time"]))
        sha = str((r.get("policy") or {}).get("sha256", ""))[:12]
        lines.append(
            f"| {stamp} | `{e['tag']}` | {e['action']} | {e['version']} | {r.get('pr') or ''} "
            f"| {r.get('approver') or ''} | {sha} | {'yes' if e['intact'] else 'NO'} |"
        )
    return "\n".join(lines) + "\n"
