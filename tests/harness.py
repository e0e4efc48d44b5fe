"""Run a GitHub Actions job's steps locally, the way the runner does, so workflows are tested.

What it does, per job:
- every `run:` step is written to a script and executed with
  `bash --noprofile --norc -eo pipefail <script>` (the runner's `shell: bash`) in `workdir`
  (or the step's / defaults' `working-directory`);
- `${{ }}` expressions are substituted TEXTUALLY into `run:`, `env:`, `with:`, `name:` and
  `working-directory:` before the shell sees them, exactly like the runner. Nothing is quoted or
  sanitized: an attacker-controlled `${{ github.event.pull_request.title }}` inside `run:` WOULD
  execute here, which is what makes the hostile-event tests meaningful;
- fresh `GITHUB_OUTPUT`, `GITHUB_ENV`, `GITHUB_PATH` and `GITHUB_STEP_SUMMARY` files per step
  (both `name=value` and `name<<DELIM` heredoc forms), honoured by the following steps;
- `if:` conditions evaluated, with the implicit `success() &&` unless a status function is used;
  `continue-on-error` honoured; a failed step skips the rest unless their `if:` says otherwise;
- `uses:` steps are never executed: a callable from `stub_uses` (matched on `owner/repo[/path]`
  without the `@ref`, or on the full `uses:` string) may emulate them (return outputs, write
  files, raise to fail); without one the step is recorded as skipped.

The expression language covers what the workflows here use: contexts (github, env, vars,
secrets, inputs, steps, needs, job, runner, matrix), property and index access, literals,
`! == != < <= > >= && ||`, and the functions contains, startsWith, endsWith, format, join,
toJSON, fromJSON, hashFiles, success, failure, always, cancelled.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shlex
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

# --------------------------------------------------------------------------- results


@dataclass
class StepResult:
    id: str | None
    name: str
    returncode: int
    stdout: str
    stderr: str
    skipped: bool
    # Extras (defaulted, so the core API stays positional-compatible):
    uses: str | None = None  # the `uses:` string for action steps
    with_: dict[str, str] = field(default_factory=dict)  # substituted `with:` inputs
    script: str = ""  # the `run:` text after substitution (what bash executed)
    outcome: str = "success"  # success | failure | skipped (before continue-on-error)
    seconds: float = 0.0  # wall time of the step


@dataclass
class JobResult:
    steps: list[StepResult]
    outputs: dict[str, dict[str, str]]  # step id -> outputs written to GITHUB_OUTPUT
    env: dict[str, str]  # env context at the end (workflow + job + GITHUB_ENV)
    summary: str  # concatenated GITHUB_STEP_SUMMARY of every step
    ok: bool
    # Extras:
    skipped: bool = False  # the job-level `if:` was false (no step ran)
    job_outputs: dict[str, str] = field(default_factory=dict)  # the job's `outputs:`

    def step(self, key: str) -> StepResult:
        """The step with this id, or else this name."""
        for s in self.steps:
            if s.id == key:
                return s
        for s in self.steps:
            if s.name == key:
                return s
        raise KeyError(f"no step {key!r}; steps: {[s.id or s.name for s in self.steps]}")


@dataclass
class StepContext:
    """What a `uses:` stub sees."""

    workdir: Path
    uses: str
    with_: dict[str, str]
    env: dict[str, str]  # the step's process environment (incl. GITHUB_* variables)
    github: dict[str, Any]
    step_id: str | None
    name: str
    runner_temp: Path


StubFn = Callable[[StepContext], Mapping[str, str] | None]


class ExpressionError(ValueError):
    pass


# --------------------------------------------------------------------------- YAML


def load_workflow(path: Path) -> dict[str, Any]:
    """The workflow as plain dicts. YAML 1.2 (as the runner parses it): `on` stays a string."""
    yaml = YAML(typ="safe", pure=True)
    data = yaml.load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a mapping")
    return data


# --------------------------------------------------------------------------- expressions

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<str>'(?:[^']|'')*')
  | (?P<num>-?(?:0x[0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?))
  | (?P<op>==|!=|<=|>=|&&|\|\||[<>!()\[\].,*])
  | (?P<id>[A-Za-z_][A-Za-z0-9_-]*)
    """,
    re.VERBOSE,
)


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise ExpressionError(f"unexpected character at {pos} in {text!r}")
        pos = m.end()
        kind = m.lastgroup or ""
        if kind != "ws":
            tokens.append((kind, m.group()))
    return tokens


class _Filtered(list[Any]):
    """Result of a `.*` object filter (so a following `.name` maps over it)."""


def _to_number(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if text == "":
            return 0.0
        try:
            return float(int(text, 16)) if text.lower().startswith("0x") else float(text)
        except ValueError:
            return math.nan
    return math.nan


def _truthy(value: Any) -> bool:
    if value is None or value is False:
        return False
    if isinstance(value, int | float) and not isinstance(value, bool):
        return not (value == 0 or math.isnan(value))
    if isinstance(value, str):
        return value != ""
    return True


def _equal(a: Any, b: Any) -> bool:
    """Loose equality of the expression language: strings case-insensitive, else numbers."""
    if isinstance(a, str) and isinstance(b, str):
        return a.lower() == b.lower()
    if a is None and b is None:
        return True
    if isinstance(a, dict | list) or isinstance(b, dict | list):
        return a is b
    if isinstance(a, bool) and isinstance(b, bool):
        return a is b
    x, y = _to_number(a), _to_number(b)
    return x == y


def _compare(a: Any, b: Any, op: str) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        x: Any = a.lower()
        y: Any = b.lower()
    else:
        x, y = _to_number(a), _to_number(b)
        if math.isnan(x) or math.isnan(y):
            return False
    return bool({"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op])


def to_string(value: Any) -> str:
    """How the runner turns a value into text inside `${{ }}`."""
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2)


def _get(obj: Any, key: Any) -> Any:
    if isinstance(obj, _Filtered):
        out = _Filtered()
        for item in obj:
            value = _get(item, key)
            if value is not None:
                out.append(value)
        return out
    if isinstance(obj, dict):
        if not isinstance(key, str):
            key = to_string(key)
        if key in obj:
            return obj[key]
        lowered = key.lower()
        for k, v in obj.items():
            if isinstance(k, str) and k.lower() == lowered:
                return v
        return None
    if isinstance(obj, list) and not isinstance(key, str):
        number = _to_number(key)
        if not math.isnan(number) and 0 <= int(number) < len(obj):
            return obj[int(number)]
    return None


def _format(fmt: str, *args: Any) -> str:
    out: list[str] = []
    i = 0
    while i < len(fmt):
        ch = fmt[i]
        if ch == "{" and fmt.startswith("{{", i):
            out.append("{")
            i += 2
        elif ch == "}" and fmt.startswith("}}", i):
            out.append("}")
            i += 2
        elif ch == "{":
            end = fmt.index("}", i)
            out.append(to_string(args[int(fmt[i + 1 : end])]))
            i = end + 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


class Evaluator:
    """Evaluates one expression against the contexts and the job status."""

    def __init__(
        self,
        contexts: Mapping[str, Any],
        *,
        workdir: Path,
        job_failed: bool = False,
    ) -> None:
        self.contexts = {k.lower(): v for k, v in contexts.items()}
        self.workdir = workdir
        self.job_failed = job_failed

    # -- entry points
    def evaluate(self, text: str) -> Any:
        self.tokens = _tokenize(text)
        self.pos = 0
        value = self._or()
        if self.pos != len(self.tokens):
            raise ExpressionError(f"trailing tokens in {text!r}: {self.tokens[self.pos :]}")
        return value

    # -- parser helpers
    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _accept(self, *ops: str) -> str | None:
        tok = self._peek()
        if tok and tok[0] == "op" and tok[1] in ops:
            self.pos += 1
            return tok[1]
        return None

    def _expect(self, op: str) -> None:
        if not self._accept(op):
            raise ExpressionError(f"expected {op!r} at token {self.pos}: {self.tokens}")

    # -- grammar (lowest precedence first)
    def _or(self) -> Any:
        left = self._and()
        while self._accept("||"):
            right = self._and()
            left = left if _truthy(left) else right
        return left

    def _and(self) -> Any:
        left = self._eq()
        while self._accept("&&"):
            right = self._eq()
            left = right if _truthy(left) else left
        return left

    def _eq(self) -> Any:
        left = self._cmp()
        while (op := self._accept("==", "!=")) is not None:
            right = self._cmp()
            left = _equal(left, right) if op == "==" else not _equal(left, right)
        return left

    def _cmp(self) -> Any:
        left = self._unary()
        while (op := self._accept("<", "<=", ">", ">=")) is not None:
            left = _compare(left, self._unary(), op)
        return left

    def _unary(self) -> Any:
        if self._accept("!"):
            return not _truthy(self._unary())
        return self._postfix()

    def _postfix(self) -> Any:
        value = self._primary()
        while True:
            if self._accept("."):
                tok = self._peek()
                if tok is None:
                    raise ExpressionError("dangling '.'")
                self.pos += 1
                if tok == ("op", "*"):
                    value = _Filtered(value.values() if isinstance(value, dict) else value or [])
                elif tok[0] in ("id", "num"):
                    value = _get(value, tok[1])
                else:
                    raise ExpressionError(f"bad property {tok}")
            elif self._accept("["):
                if self._accept("*"):
                    value = _Filtered(value.values() if isinstance(value, dict) else value or [])
                else:
                    value = _get(value, self._or())
                self._expect("]")
            else:
                return value

    def _primary(self) -> Any:
        tok = self._peek()
        if tok is None:
            raise ExpressionError("unexpected end of expression")
        kind, text = tok
        self.pos += 1
        if kind == "str":
            return text[1:-1].replace("''", "'")
        if kind == "num":
            return _to_number(text)
        if kind == "op" and text == "(":
            value = self._or()
            self._expect(")")
            return value
        if kind == "id":
            lowered = text.lower()
            if lowered in ("true", "false"):
                return lowered == "true"
            if lowered == "null":
                return None
            if self._accept("("):
                args: list[Any] = []
                if not self._accept(")"):
                    args.append(self._or())
                    while self._accept(","):
                        args.append(self._or())
                    self._expect(")")
                return self._call(lowered, args)
            if lowered not in self.contexts:
                raise ExpressionError(f"unknown context {text!r}")
            return self.contexts[lowered]
        raise ExpressionError(f"unexpected token {tok}")

    def _call(self, name: str, args: list[Any]) -> Any:
        if name == "success":
            return not self.job_failed
        if name == "failure":
            return self.job_failed
        if name == "always":
            return True
        if name == "cancelled":
            return False
        if name == "contains":
            haystack, needle = args
            if isinstance(haystack, list):
                return any(_equal(item, needle) for item in haystack)
            return to_string(needle).lower() in to_string(haystack).lower()
        if name == "startswith":
            return to_string(args[0]).lower().startswith(to_string(args[1]).lower())
        if name == "endswith":
            return to_string(args[0]).lower().endswith(to_string(args[1]).lower())
        if name == "format":
            return _format(to_string(args[0]), *args[1:])
        if name == "join":
            sep = to_string(args[1]) if len(args) > 1 else ","
            items = args[0] if isinstance(args[0], list) else [args[0]]
            return sep.join(to_string(i) for i in items)
        if name == "tojson":
            return json.dumps(args[0], indent=2)
        if name == "fromjson":
            return json.loads(to_string(args[0]))
        if name == "hashfiles":
            return hash_files(self.workdir, [to_string(a) for a in args])
        raise ExpressionError(f"unknown function {name}()")


def hash_files(root: Path, patterns: list[str]) -> str:
    """sha256 over the sha256 of every matching file (sorted); '' when nothing matches."""
    files: set[Path] = set()
    for pattern in patterns:
        for line in pattern.splitlines():
            line = line.strip()
            if line and not line.startswith("!"):
                files.update(p for p in root.glob(line) if p.is_file())
    if not files:
        return ""
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _find_expressions(text: str) -> list[tuple[int, int, str]]:
    """(start, end, inner) of every `${{ ... }}`, skipping `}}` inside quoted strings."""
    found: list[tuple[int, int, str]] = []
    pos = 0
    while (start := text.find("${{", pos)) != -1:
        i = start + 3
        in_str = False
        while i < len(text):
            if text[i] == "'":
                in_str = not in_str
            elif not in_str and text.startswith("}}", i):
                break
            i += 1
        else:
            raise ExpressionError(f"unterminated expression in {text[start : start + 80]!r}")
        found.append((start, i + 2, text[start + 3 : i]))
        pos = i + 2
    return found


def substitute(text: Any, evaluator: Evaluator) -> str:
    """Replace each `${{ expr }}` by its value as text. No quoting, no escaping: like the runner."""
    if not isinstance(text, str):
        return to_string(text)
    out: list[str] = []
    last = 0
    for start, end, inner in _find_expressions(text):
        out.append(text[last:start])
        out.append(to_string(evaluator.evaluate(inner)))
        last = end
    out.append(text[last:])
    return "".join(out)


_STATUS_FN = re.compile(r"\b(success|failure|always|cancelled)\s*\(", re.IGNORECASE)


def evaluate_condition(condition: Any, evaluator: Evaluator) -> bool:
    """An `if:` value: bare or wrapped expression, implicit `success() &&` unless status fn."""
    if condition is None:
        condition = "success()"
    if isinstance(condition, bool):
        return condition and not evaluator.job_failed
    text = to_string(condition).strip()
    exprs = _find_expressions(text)
    if len(exprs) == 1 and exprs[0][0] == 0 and exprs[0][1] == len(text):
        text = exprs[0][2].strip()
    elif exprs:
        # Text mixing literals and expressions is a non-empty string: truthy.
        text = "'" + substitute(text, evaluator).replace("'", "''") + "'"
    if not _STATUS_FN.search(text):
        text = f"success() && ({text})"
    return _truthy(evaluator.evaluate(text))


# --------------------------------------------------------------------------- file commands


def parse_command_file(text: str) -> dict[str, str]:
    """GITHUB_OUTPUT / GITHUB_ENV: `name=value` lines and `name<<DELIM ... DELIM` blocks."""
    values: dict[str, str] = {}
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i].rstrip("\r")
        i += 1
        if not line.strip():
            continue
        eq, heredoc = line.find("="), line.find("<<")
        if heredoc != -1 and (eq == -1 or heredoc < eq):
            name, delim = line[:heredoc], line[heredoc + 2 :]
            body: list[str] = []
            while i < len(lines) and lines[i].rstrip("\r") != delim:
                body.append(lines[i].rstrip("\r"))
                i += 1
            if i >= len(lines):
                raise ValueError(f"heredoc for {name!r} not terminated by {delim!r}")
            i += 1
            values[name] = "\n".join(body)
        elif eq != -1:
            values[line[:eq]] = line[eq + 1 :]
        else:
            raise ValueError(f"invalid command file line: {line!r}")
    return values


# --------------------------------------------------------------------------- job runner

_SHELLS = {
    "bash": ["bash", "--noprofile", "--norc", "-eo", "pipefail", "{0}"],
    "sh": ["sh", "-e", "{0}"],
}


def _shell_argv(shell: str | None, script: Path) -> list[str]:
    template = _SHELLS["bash"] if not shell else _SHELLS.get(shell) or shlex.split(shell)
    if "{0}" not in template:
        template = [*template, "{0}"]
    return [str(script) if a == "{0}" else a for a in template]


def _base_process_env() -> dict[str, str]:
    """The runner machine's environment: this process's, minus anything CI- or repo-specific."""
    drop = ("GITHUB_", "RUNNER_", "GIT_", "DVC_", "ACTIONS_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    for key in ("VIRTUAL_ENV", "MAKEFLAGS", "MFLAGS", "MAKELEVEL"):  # pytest under `make test`
        env.pop(key, None)
    env.update(DVC_NO_ANALYTICS="1", GIT_CONFIG_NOSYSTEM="1", PYTHONHASHSEED="0")
    return env


def _git_head(workdir: Path) -> str:
    proc = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=workdir, capture_output=True, text=True, check=False
    )
    return proc.stdout.strip() if proc.returncode == 0 else "0" * 40


def github_context(
    event: Mapping[str, Any],
    event_name: str,
    workdir: Path,
    *,
    workflow_name: str,
    job: str,
    secrets: Mapping[str, str],
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    repo = _get(_get(event, "repository"), "full_name") or "example-org/example-repo"
    ctx: dict[str, Any] = {
        "event": dict(event),
        "event_name": event_name,
        "repository": repo,
        "repository_owner": repo.split("/")[0],
        "sha": _git_head(workdir),
        "ref": "refs/heads/main",
        "ref_name": "main",
        "head_ref": "",
        "base_ref": "",
        "actor": _get(_get(event, "sender"), "login") or "octocat",
        "triggering_actor": _get(_get(event, "sender"), "login") or "octocat",
        "run_id": "1000",
        "run_number": "1",
        "run_attempt": "1",
        "workflow": workflow_name,
        "job": job,
        "workspace": str(workdir),
        "server_url": "https://github.com",
        "api_url": "https://api.github.com",
        "graphql_url": "https://api.github.com/graphql",
        "token": secrets.get("GITHUB_TOKEN", ""),
        "action": "",
    }
    pr = _get(event, "pull_request")
    if event_name.startswith("pull_request") and isinstance(pr, dict):
        number = _get(event, "number") or _get(pr, "number")
        ctx.update(
            ref=f"refs/pull/{to_string(number)}/merge",
            ref_name=f"{to_string(number)}/merge",
            head_ref=to_string(_get(_get(pr, "head"), "ref")),
            base_ref=to_string(_get(_get(pr, "base"), "ref")),
            sha=to_string(_get(_get(pr, "head"), "sha")) or ctx["sha"],
        )
    elif event_name == "push":
        ref = to_string(_get(event, "ref")) or "refs/heads/main"
        ctx.update(ref=ref, ref_name=ref.rsplit("/", 1)[-1], sha=_get(event, "after") or ctx["sha"])
    if overrides:
        ctx.update(overrides)
    return ctx


def _github_env(ctx: Mapping[str, Any], event_path: Path, runner_temp: Path) -> dict[str, str]:
    return {
        "CI": "true",
        "GITHUB_ACTIONS": "true",
        "GITHUB_WORKSPACE": to_string(ctx["workspace"]),
        "GITHUB_EVENT_PATH": str(event_path),
        "GITHUB_EVENT_NAME": to_string(ctx["event_name"]),
        "GITHUB_REPOSITORY": to_string(ctx["repository"]),
        "GITHUB_REPOSITORY_OWNER": to_string(ctx["repository_owner"]),
        "GITHUB_SHA": to_string(ctx["sha"]),
        "GITHUB_REF": to_string(ctx["ref"]),
        "GITHUB_REF_NAME": to_string(ctx["ref_name"]),
        "GITHUB_HEAD_REF": to_string(ctx["head_ref"]),
        "GITHUB_BASE_REF": to_string(ctx["base_ref"]),
        "GITHUB_ACTOR": to_string(ctx["actor"]),
        "GITHUB_RUN_ID": to_string(ctx["run_id"]),
        "GITHUB_RUN_NUMBER": to_string(ctx["run_number"]),
        "GITHUB_RUN_ATTEMPT": to_string(ctx["run_attempt"]),
        "GITHUB_WORKFLOW": to_string(ctx["workflow"]),
        "GITHUB_JOB": to_string(ctx["job"]),
        "GITHUB_SERVER_URL": to_string(ctx["server_url"]),
        "GITHUB_API_URL": to_string(ctx["api_url"]),
        "RUNNER_OS": "Linux",
        "RUNNER_ARCH": "X64",
        "RUNNER_TEMP": str(runner_temp),
    }


def _stub_for(uses: str, stubs: Mapping[str, StubFn]) -> StubFn | None:
    if uses in stubs:
        return stubs[uses]
    return stubs.get(uses.split("@", 1)[0])


def _step_display_name(step: Mapping[str, Any], evaluator: Evaluator) -> str:
    if "name" in step:
        return substitute(step["name"], evaluator)
    if "run" in step:
        first = to_string(step["run"]).strip().splitlines()
        return f"Run {first[0] if first else ''}"
    return f"Run {step.get('uses', '')}"


def run_job(
    workflow: Path,
    job: str,
    *,
    workdir: Path,
    event: dict[str, Any],
    event_name: str,
    env: dict[str, str] | None = None,
    secrets: dict[str, str] | None = None,
    vars: dict[str, str] | None = None,
    stub_uses: dict[str, StubFn] | None = None,
    path_prepend: list[Path] | None = None,
    inputs: dict[str, Any] | None = None,
    needs: dict[str, Any] | None = None,
    github: dict[str, Any] | None = None,
    timeout: float = 900,
) -> JobResult:
    """Execute `job` of `workflow` locally (see module docstring).

    env: added to the runner machine's process environment (not to the `env` context).
    secrets: the `secrets` context (GITHUB_TOKEN defaults to a dummy value).
    github: overrides of `github.*` values (sha, ref, actor, ...).
    needs: the `needs` context, e.g. {"report": {"result": "success", "outputs": {...}}}.
    """
    wf = load_workflow(workflow)
    jobs = wf.get("jobs") or {}
    if job not in jobs:
        raise KeyError(f"{workflow}: no job {job!r} (jobs: {sorted(jobs)})")
    spec: dict[str, Any] = jobs[job]
    workdir = Path(workdir).resolve()
    all_secrets = {"GITHUB_TOKEN": "ghs_dummy_token_for_tests", **(secrets or {})}
    stubs = stub_uses or {}

    runner_temp = Path(tempfile.mkdtemp(prefix="harness-runner-"))
    event_path = runner_temp / "event.json"
    event_path.write_text(json.dumps(event), encoding="utf-8")
    ctx_github = github_context(
        event,
        event_name,
        workdir,
        workflow_name=to_string(wf.get("name") or workflow.name),
        job=job,
        secrets=all_secrets,
        overrides=github,
    )
    steps_ctx: dict[str, Any] = {}
    contexts: dict[str, Any] = {
        "github": ctx_github,
        "env": {},
        "vars": dict(vars or {}),
        "secrets": all_secrets,
        "inputs": dict(inputs or {}),
        "needs": dict(needs or {}),
        "matrix": {},
        "strategy": {},
        "steps": steps_ctx,
        "job": {"status": "success"},
        "runner": {"os": "Linux", "arch": "X64", "temp": str(runner_temp), "name": "harness"},
    }

    def evaluator(job_failed: bool = False) -> Evaluator:
        return Evaluator(contexts, workdir=workdir, job_failed=job_failed)

    # env context: workflow env, then job env (each may use expressions of the outer level)
    env_ctx: dict[str, str] = {}
    for level in (wf.get("env") or {}, spec.get("env") or {}):
        for key, value in level.items():
            env_ctx[key] = substitute(value, evaluator())
            contexts["env"] = dict(env_ctx)

    if "if" in spec and not evaluate_condition(spec["if"], evaluator()):
        return JobResult(steps=[], outputs={}, env=env_ctx, summary="", ok=True, skipped=True)

    defaults = {
        **((wf.get("defaults") or {}).get("run") or {}),
        **((spec.get("defaults") or {}).get("run") or {}),
    }
    process_base = _base_process_env()
    process_base.update(env or {})
    extra_path: list[str] = [str(p) for p in (path_prepend or [])]
    gh_env = _github_env(ctx_github, event_path, runner_temp)

    results: list[StepResult] = []
    summary_parts: list[str] = []
    failed = False
    for index, step in enumerate(spec.get("steps") or []):
        step_id = step.get("id")
        key = step_id or f"__{index}"
        contexts["env"] = dict(env_ctx)
        ev = evaluator(failed)
        name = _step_display_name(step, ev)
        if not evaluate_condition(step.get("if"), ev):
            results.append(
                StepResult(step_id, name, 0, "", "", True, uses=step.get("uses"), outcome="skipped")
            )
            steps_ctx[key] = {"outputs": {}, "outcome": "skipped", "conclusion": "skipped"}
            continue

        # step env (evaluated with the env context so far), then the step's own expressions
        step_env = {k: substitute(v, ev) for k, v in (step.get("env") or {}).items()}
        contexts["env"] = {**env_ctx, **step_env}
        ev = evaluator(failed)

        files = {
            "GITHUB_OUTPUT": runner_temp / f"output_{index}",
            "GITHUB_ENV": runner_temp / f"env_{index}",
            "GITHUB_PATH": runner_temp / f"path_{index}",
            "GITHUB_STEP_SUMMARY": runner_temp / f"summary_{index}",
        }
        for path in files.values():
            path.write_text("", encoding="utf-8")
        proc_env = {**process_base, **env_ctx, **step_env, **gh_env}
        proc_env.update({k: str(v) for k, v in files.items()})
        proc_env["PATH"] = os.pathsep.join([*extra_path, process_base.get("PATH", "")])
        if step_id:
            proc_env["GITHUB_ACTION"] = step_id

        outputs: dict[str, str] = {}
        if "uses" in step:
            uses = to_string(step["uses"])
            with_ = {k: substitute(v, ev) for k, v in (step.get("with") or {}).items()}
            stub = _stub_for(uses, stubs)
            if stub is None:
                result = StepResult(step_id, name, 0, "", "", True, uses=uses, with_=with_)
            else:
                ctx = StepContext(
                    workdir=workdir,
                    uses=uses,
                    with_=with_,
                    env=proc_env,
                    github=ctx_github,
                    step_id=step_id,
                    name=name,
                    runner_temp=runner_temp,
                )
                try:
                    outputs = {k: to_string(v) for k, v in (stub(ctx) or {}).items()}
                    result = StepResult(step_id, name, 0, "", "", False, uses=uses, with_=with_)
                except Exception as exc:  # a stub raising is the action failing
                    result = StepResult(
                        step_id, name, 1, "", f"{type(exc).__name__}: {exc}", False, uses, with_
                    )
        else:
            script_text = substitute(step["run"], ev)
            script = runner_temp / f"step_{index}.sh"
            script.write_text(script_text, encoding="utf-8")
            cwd_spec = step.get("working-directory", defaults.get("working-directory"))
            cwd = workdir / substitute(cwd_spec, ev) if cwd_spec else workdir
            shell = step.get("shell", defaults.get("shell"))
            started = time.monotonic()
            try:
                proc = subprocess.run(
                    _shell_argv(to_string(shell) if shell else None, script),
                    cwd=cwd,
                    env=proc_env,
                    capture_output=True,
                    text=True,
                    timeout=timeout,
                    check=False,
                )
                rc, out, err = proc.returncode, proc.stdout, proc.stderr
            except subprocess.TimeoutExpired as exc:
                rc, out, err = 124, str(exc.stdout or ""), f"timeout: {exc}"
            result = StepResult(step_id, name, rc, out, err, False, script=script_text)
            result.seconds = time.monotonic() - started

        # file commands are honoured even when the step failed (as on the runner)
        outputs.update(parse_command_file(files["GITHUB_OUTPUT"].read_text(encoding="utf-8")))
        env_ctx.update(parse_command_file(files["GITHUB_ENV"].read_text(encoding="utf-8")))
        new_paths = [
            p for p in files["GITHUB_PATH"].read_text(encoding="utf-8").splitlines() if p.strip()
        ]
        extra_path = [*reversed(new_paths), *extra_path]
        summary_parts.append(files["GITHUB_STEP_SUMMARY"].read_text(encoding="utf-8"))

        outcome = "success" if result.returncode == 0 else "failure"
        result.outcome = "skipped" if result.skipped else outcome
        coe = step.get("continue-on-error", False)
        continue_on_error = (
            _truthy(Evaluator(contexts, workdir=workdir).evaluate(_find_expressions(coe)[0][2]))
            if isinstance(coe, str) and _find_expressions(coe)
            else bool(coe)
        )
        conclusion = "success" if continue_on_error else outcome
        if result.skipped:
            conclusion = "skipped"
        if conclusion == "failure":
            failed = True
            contexts["job"] = {"status": "failure"}
        steps_ctx[key] = {"outputs": outputs, "outcome": result.outcome, "conclusion": conclusion}
        results.append(result)

    contexts["env"] = dict(env_ctx)
    ev = evaluator(failed)
    job_outputs = {k: substitute(v, ev) for k, v in (spec.get("outputs") or {}).items()}
    return JobResult(
        steps=results,
        outputs={k: v["outputs"] for k, v in steps_ctx.items() if v["outputs"]},
        env=env_ctx,
        summary="".join(summary_parts),
        ok=not failed,
        job_outputs=job_outputs,
    )


# --------------------------------------------------------------------------- shims


def _shim_preamble(record: Path, env_keys: list[str]) -> str:
    """Python source shared by the shims: parse argv, capture file arguments, build `entry`."""
    return (
        f"#!{sys.executable}\n"
        "# Generated by tests/harness.py: records its invocation as one JSON line.\n"
        "import json, os, sys\n"
        "from pathlib import Path\n"
        f"RECORD = {str(record)!r}\n"
        "argv = sys.argv[1:]\n"
        "files = {}\n"
        "for arg in argv:\n"
        "    p = Path(arg)\n"
        "    try:\n"  # a long text argument (a PR body) is no path: stat() raises ENAMETOOLONG
        "        is_file = not arg.startswith('-') and p.is_file()\n"
        "    except OSError:\n"
        "        is_file = False\n"
        "    if is_file:\n"
        "        files[arg] = p.read_text(encoding='utf-8', errors='replace')\n"
        "entry = {\n"
        "    'argv': argv,\n"
        "    'cwd': os.getcwd(),\n"
        "    'files': files,\n"
        f"    'env': {{k: bool(os.environ.get(k)) for k in {env_keys!r}}},\n"
        "}\n"
        "with open(RECORD, 'a', encoding='utf-8') as fh:\n"
        "    fh.write(json.dumps(entry) + '\\n')\n"
    )


def _write_shim(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def read_record(record: Path) -> list[dict[str, Any]]:
    """The invocations a shim recorded (empty when it was never called)."""
    if not record.exists():
        return []
    return [json.loads(line) for line in record.read_text(encoding="utf-8").splitlines() if line]


def cml_shim(bin_dir: Path, record: Path) -> Path:
    """An executable `cml` in bin_dir that appends {argv, cwd, files, env} to `record`.

    `files` maps every positional argument naming an existing file (the report body of
    `cml comment update ... report.md`) to its content. Exit code: $CML_SHIM_EXIT (default 0).
    """
    env_keys = ["REPO_TOKEN", "GITHUB_TOKEN", "GH_TOKEN"]
    text = _shim_preamble(record, env_keys) + (
        "print('https://github.com/example-org/example-repo/pull/1#issuecomment-1')\n"
        "sys.exit(int(os.environ.get('CML_SHIM_EXIT', '0')))\n"
    )
    return _write_shim(Path(bin_dir) / "cml", text)


def gh_shim(bin_dir: Path, record: Path, responses: Mapping[str, Any] | None = None) -> Path:
    """An executable `gh` recording its argv; `gh api <endpoint>` answers from `responses`.

    `responses` maps an endpoint (e.g. "repos/o/r/pulls/5", leading "/" optional) to the JSON
    it returns; `--jq .a.b` (dotted paths only) selects a field and prints it raw, like gh.
    Unknown endpoints exit 1 with "HTTP 404"; other subcommands print nothing and exit 0.
    """
    answers = {k.lstrip("/"): v for k, v in (responses or {}).items()}
    env_keys = ["GH_TOKEN", "GITHUB_TOKEN", "GH_REPO"]
    text = _shim_preamble(record, env_keys) + (
        f"ANSWERS = json.loads({json.dumps(answers)!r})\n"
        "if argv[:1] != ['api']:\n"
        "    sys.exit(0)\n"
        "rest = argv[1:]\n"
        "jq = None\n"
        "positional = []\n"
        "i = 0\n"
        "while i < len(rest):\n"
        "    a = rest[i]\n"
        "    if a in ('--jq', '-q'):\n"
        "        jq = rest[i + 1]; i += 2; continue\n"
        "    if a.startswith('--jq='):\n"
        "        jq = a.split('=', 1)[1]; i += 1; continue\n"
        "    if a in ('-H', '--header', '-X', '--method', '-f', '-F', '--field', '--raw-field'):\n"
        "        i += 2; continue\n"
        "    if a.startswith('-'):\n"
        "        i += 1; continue\n"
        "    positional.append(a); i += 1\n"
        "endpoint = positional[0].lstrip('/') if positional else ''\n"
        "if endpoint not in ANSWERS:\n"
        "    print('gh: Not Found (HTTP 404)', file=sys.stderr)\n"
        "    sys.exit(1)\n"
        "value = ANSWERS[endpoint]\n"
        "if jq:\n"
        "    for part in [p for p in jq.strip().lstrip('.').split('.') if p]:\n"
        "        value = value.get(part) if isinstance(value, dict) else None\n"
        "    if value is None:\n"
        "        print('null')\n"
        "    elif isinstance(value, str):\n"
        "        print(value)\n"
        "    else:\n"
        "        print(json.dumps(value))\n"
        "else:\n"
        "    print(json.dumps(value))\n"
    )
    return _write_shim(Path(bin_dir) / "gh", text)


def recording_shim(bin_dir: Path, name: str, record: Path, *, stdout: str = "") -> Path:
    """An executable `name` that only records its invocation (e.g. `npm install ...`)."""
    text = _shim_preamble(record, []) + f"sys.stdout.write({stdout!r})\n"
    return _write_shim(Path(bin_dir) / name, text)
