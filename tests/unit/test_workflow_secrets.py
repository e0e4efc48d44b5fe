"""Every stored secret is read only inside a GitHub environment the README documents.

A secret stored at repository level reaches every job of every workflow, on every branch. The
template reads each stored secret (anything but the per-run `GITHUB_TOKEN`) in jobs bound to a
GitHub `environment:`, so a fork keeps it in that environment, out of the other jobs' reach and
behind the environment's protection (deployment branches, reviewers). The README's table in
"GitHub setup" names each environment with its jobs, its secrets and the branches it serves;
these tests fail when a workflow and that table disagree, so the setup a fork follows is the
one the workflows need. zizmor's auditor persona (`make workflow-lint`) checks the first rule
again, independently (`secrets-outside-env`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from ruamel.yaml import YAML

from tests.conftest import REPO_ROOT

WORKFLOWS = REPO_ROOT / ".github" / "workflows"
SECTION = "## GitHub setup: settings, secrets and tokens"
NOT_STORED = {"GITHUB_TOKEN"}  # minted by GitHub for each run, scoped by `permissions:`
EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)
SECRET = re.compile(r"\bsecrets\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)")
# `secrets['X']`, `secrets[format(...)]`, `toJSON(secrets)`: a read the test cannot name.
WHOLE_CONTEXT = re.compile(r"\bsecrets\b(?!\s*\.\s*[A-Za-z_])")
# Events whose runs execute a pull request's code or act on its behalf: never a main-only
# environment (GitHub checks a pull_request job as refs/pull/<N>/merge and refuses it anyway).
PR_EVENTS = {"pull_request", "pull_request_target", "workflow_run", "issue_comment"}
WRITEBACK_ENVIRONMENT = "pr-writeback"
READ_ONLY_ENVIRONMENT = "storage-read"


@dataclass
class Job:
    workflow: str
    job: str
    environment: str | None
    secrets: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)

    @property
    def ref(self) -> str:
        return f"{self.workflow}:{self.job}"


def _strings(node: Any, key: str = "") -> Iterator[tuple[str, str]]:
    """(key, string) for every scalar under node; `if:` values are expressions without `${{`."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _strings(v, str(k))
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item, key)
    elif isinstance(node, str):
        yield key, node


def _expressions(node: Any) -> Iterator[str]:
    for key, text in _strings(node):
        yield from EXPRESSION.findall(text)
        if key == "if" and "${{" not in text:
            yield text


def secret_reads(node: Any) -> tuple[set[str], list[str]]:
    """(stored secrets read under node, reads that name no secret: the whole context)."""
    names: set[str] = set()
    whole = []
    for expr in _expressions(node):
        names.update(SECRET.findall(expr))
        if WHOLE_CONTEXT.search(expr):
            whole.append(expr.strip())
    return names - NOT_STORED, whole


def environment_name(job: dict[str, Any]) -> str | None:
    env = job.get("environment")
    if isinstance(env, dict):
        env = env.get("name")
    return None if env is None else str(env)


def triggers(data: dict[Any, Any]) -> set[str]:
    on = data.get("on", data.get(True))  # YAML 1.1 readers turn the key `on` into True
    if isinstance(on, str):
        return {on}
    return {str(event) for event in on or ()}


def load(text: str) -> dict[Any, Any]:
    data = YAML(typ="safe", pure=True).load(text)
    assert isinstance(data, dict), "a workflow is a mapping"
    return data


def audit(name: str, text: str) -> list[Job]:
    """Each job of one workflow with its environment, the secrets it reads, and what breaks the
    rule: a stored secret without an environment, an environment named by an expression, the
    whole `secrets` context, `secrets: inherit`, or a secret read at workflow level."""
    data = load(text)
    top, whole = secret_reads({k: v for k, v in data.items() if k != "jobs"})
    found = []
    for job_id, job in (data.get("jobs") or {}).items():
        entry = Job(name, str(job_id), environment_name(job))
        entry.secrets, whole_here = secret_reads(job)
        if top or whole:
            entry.problems.append(f"secrets read at workflow level: {sorted(top) or whole}")
        if whole_here:
            entry.problems.append(f"the whole secrets context is read: {whole_here}")
        if job.get("secrets") == "inherit":
            entry.problems.append("`secrets: inherit` hands every secret to the called workflow")
        if entry.environment is not None and "${{" in entry.environment:
            entry.problems.append(f"environment named by an expression: {entry.environment}")
        if entry.secrets and entry.environment is None:
            entry.problems.append(f"reads {sorted(entry.secrets)} outside any environment")
        found.append(entry)
    return found


def workflow_jobs() -> list[Job]:
    jobs = []
    for path in sorted(WORKFLOWS.glob("*.yml")):
        jobs += audit(path.name, path.read_text(encoding="utf-8"))
    return jobs


@dataclass
class Row:
    jobs: set[str]
    secrets: set[str]
    main_only: bool


def readme_environments(readme: str | None = None) -> dict[str, Row]:
    """The environment table of the README's "GitHub setup" section, by environment name."""
    text = readme if readme is not None else (REPO_ROOT / "README.md").read_text()
    assert SECTION in text, f"README has no section {SECTION!r}"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    rows: dict[str, Row] = {}
    header: list[str] | None = None
    for line in section.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = [c.lower() for c in cells]
            continue
        if header[:1] != ["environment"] or set(cells[0]) <= {"-", ":"}:
            continue
        col = dict(zip(header, cells, strict=False))
        name = re.fullmatch(r"`([\w.-]+)`", col["environment"])
        assert name, f"environment cell is not one `name`: {col['environment']!r}"
        rows[name.group(1)] = Row(
            jobs=set(re.findall(r"`([\w.-]+\.yml:[\w-]+)`", col["jobs"])),
            secrets=set(re.findall(r"`([A-Z][A-Z0-9_]*)`", col["secrets"])),
            main_only="`main`" in col["deployment branches"],
        )
    assert rows, "no table with an `environment` column in the GitHub setup section"
    return rows


# --------------------------------------------------------------------------- the workflows


def test_every_stored_secret_is_read_inside_a_documented_environment() -> None:
    jobs = workflow_jobs()
    assert any(job.secrets for job in jobs), "no secret found: the pattern no longer matches"
    documented = readme_environments()
    problems = [f"{job.ref}: {p}" for job in jobs for p in job.problems]
    problems += [
        f"{job.ref}: environment `{job.environment}` is not in the README's table"
        for job in jobs
        if job.environment is not None and job.environment not in documented
    ]
    assert problems == []


def test_readme_table_lists_each_environment_with_its_jobs_and_secrets() -> None:
    used: dict[str, Row] = {}
    for job in workflow_jobs():
        if job.environment is not None:
            row = used.setdefault(job.environment, Row(set(), set(), False))
            row.jobs.add(job.ref)
            row.secrets |= job.secrets
    documented = readme_environments()
    assert sorted(documented) == sorted(used), "README rows and the workflows' environments"
    for name, row in used.items():
        assert documented[name].jobs == row.jobs, f"jobs of `{name}`"
        assert documented[name].secrets == row.secrets, f"secrets of `{name}`"


def test_main_only_environments_never_serve_pull_request_runs() -> None:
    documented = readme_environments()
    assert any(row.main_only for row in documented.values())
    wrong = []
    for path in sorted(WORKFLOWS.glob("*.yml")):
        text = path.read_text(encoding="utf-8")
        events = triggers(load(text)) & PR_EVENTS
        for job in audit(path.name, text):
            env = documented.get(job.environment or "")
            if env is not None and env.main_only and events:
                wrong.append(f"{job.ref} ({sorted(events)}) uses main-only `{job.environment}`")
    assert wrong == []


def test_pull_request_jobs_hold_no_token_but_the_write_back() -> None:
    """A job that runs the PR's code on every pull request, ungated, gets a storage key at most.
    The one exception is the opt-in write-back, whose environment the README tells a fork to
    put reviewers on; every other token sits behind `main`."""
    documented = readme_environments()
    tokens = []
    for path in sorted(WORKFLOWS.glob("*.yml")):
        text = path.read_text(encoding="utf-8")
        if not triggers(load(text)) & PR_EVENTS:
            continue
        for job in audit(path.name, text):
            if job.environment in (None, WRITEBACK_ENVIRONMENT):
                continue
            held = {s for s in documented[job.environment or ""].secrets if s.endswith("_TOKEN")}
            tokens += [f"{job.ref}: `{job.environment}` holds {sorted(held)}"] if held else []
    assert tokens == []


def pushing_make_targets(makefile: str) -> set[str]:
    """Makefile targets whose recipe runs `dvc push`, or `$(MAKE)` of such a target."""
    recipes: dict[str, str] = {}
    target = None
    for line in makefile.splitlines():
        rule = re.match(r"^([A-Za-z0-9_.-]+):(?!=)", line)
        if rule:
            target = rule.group(1)
            recipes.setdefault(target, "")
        elif line.startswith("\t") and target:
            recipes[target] += line + "\n"
    found = {t for t, recipe in recipes.items() if re.search(r"\bdvc push\b", recipe)}
    while True:
        calls = {
            t
            for t, recipe in recipes.items()
            for make in re.findall(r"\$\(MAKE\)[^\n]*", recipe)
            if set(re.findall(r"[A-Za-z0-9_.-]+", make)) & found
        }
        if calls <= found:
            return found
        found |= calls


def test_jobs_with_the_read_only_key_never_push_to_the_remote() -> None:
    """`storage-read` holds a read-only key: its jobs must not need more (a push there would fail
    on a correctly configured fork, or tempt it into handing that environment a write key)."""
    targets = pushing_make_targets((REPO_ROOT / "Makefile").read_text())
    assert "pr-push" in targets, "the Makefile no longer pushes where this test expects"
    names = "|".join(map(re.escape, sorted(targets)))
    pushes = re.compile(rf"\bdvc push\b|\bmake\s+(?:{names})(?![\w-])")
    wrong = []
    for path in sorted(WORKFLOWS.glob("*.yml")):
        for job_id, job in (load(path.read_text(encoding="utf-8")).get("jobs") or {}).items():
            if environment_name(job) != READ_ONLY_ENVIRONMENT:
                continue
            runs = [str(step.get("run", "")) for step in job.get("steps", [])]
            wrong += [f"{path.name}:{job_id}: {r.strip()}" for r in runs if pushes.search(r)]
    assert wrong == []


# --------------------------------------------------------------------------- the checker


OLD_REGISTER = """
on: {push: {branches: [main]}}
jobs:
  register:
    runs-on: ubuntu-latest
    steps:
      - env:
          REGISTRY_PUSH_TOKEN: ${{ secrets.REGISTRY_TOKEN || secrets.GITHUB_TOKEN }}
        run: make registry-register
"""


def test_checker_flags_a_secret_outside_an_environment() -> None:
    """The shape of the workflows before environments: a token read by a bare job."""
    (job,) = audit("register.yml", OLD_REGISTER)
    assert job.secrets == {"REGISTRY_TOKEN"}
    assert job.problems == ["reads ['REGISTRY_TOKEN'] outside any environment"]


def test_checker_reads_both_environment_forms_and_ignores_github_token() -> None:
    text = """
on: pull_request
jobs:
  a:
    environment: {name: storage-read, deployment: false}
    steps: [{env: {K: "${{ secrets.AWS_ACCESS_KEY_ID }}"}, run: "true"}]
  b:
    environment: model-registry
    steps: [{env: {K: "${{secrets . REGISTRY_TOKEN}}"}, run: "true"}]
  c:
    steps: [{env: {T: "${{ secrets.GITHUB_TOKEN }}"}, run: "echo secrets.NOT_AN_EXPRESSION"}]
"""
    a, b, c = audit("x.yml", text)
    assert (a.environment, a.secrets, a.problems) == ("storage-read", {"AWS_ACCESS_KEY_ID"}, [])
    assert (b.environment, b.secrets, b.problems) == ("model-registry", {"REGISTRY_TOKEN"}, [])
    assert (c.environment, c.secrets, c.problems) == (None, set(), [])


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "on: push\nenv: {K: '${{ secrets.KEY }}'}\njobs: {a: {environment: e, steps: []}}",
            "secrets read at workflow level",
        ),
        (
            "on: push\njobs: {a: {environment: e, steps: [{run: '${{ secrets[''KEY''] }}'}]}}",
            "the whole secrets context is read",
        ),
        (
            "on: push\njobs: {a: {environment: e, steps: [{run: '${{ toJSON(secrets) }}'}]}}",
            "the whole secrets context is read",
        ),
        (
            "on: push\njobs: {a: {uses: ./.github/workflows/b.yml, secrets: inherit}}",
            "`secrets: inherit`",
        ),
        (
            "on: push\njobs: {a: {environment: '${{ github.ref_name }}', steps: []}}",
            "environment named by an expression",
        ),
    ],
)
def test_checker_flags_reads_it_cannot_attribute(text: str, problem: str) -> None:
    (job,) = audit("x.yml", text)
    assert any(p.startswith(problem) for p in job.problems), job.problems


def test_readme_parser_reads_the_environment_table() -> None:
    readme = f"""{SECTION}

| environment | jobs | secrets | deployment branches | reviewers |
|---|---|---|---|---|
| `one` | `a.yml:x`, `b.yml:y` | `K1`, `K2` (read-only) | all | none |
| `two` | `c.yml:z` | `T` | `main` only | optional |

## Next
| environment | jobs | secrets | deployment branches |
|---|---|---|---|
| `elsewhere` | `d.yml:w` | `X` | all |
"""
    rows = readme_environments(readme)
    assert rows == {
        "one": Row({"a.yml:x", "b.yml:y"}, {"K1", "K2"}, main_only=False),
        "two": Row({"c.yml:z"}, {"T"}, main_only=True),
    }
