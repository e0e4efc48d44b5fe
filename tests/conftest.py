"""Shared test helpers: copy the template into a real git repo and run real commands in it."""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from pipeline import config
from tests.s3server import s3_server  # noqa: F401 (fixture: a real S3 server per module)

REPO_ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
# The demo configuration (built-in generator, binary credit-default task) pinned as fixtures:
# the template's machinery is tested on it, whatever a fork's `init` made of the live files.
DEMO_ROOT = Path(__file__).resolve().parent / "demo"
DEMO_FILES = (
    "params.yaml",
    "policies/contract.yaml",
    "policies/promotion.yaml",
    "policies/monitoring.yaml",
    "models/registry.yaml",
)
# Written by `python -m pipeline init`; the demo copy must look never initialized.
INIT_STATE = ".init-state.json"

# Small enough that a whole `dvc repro` takes seconds, large enough for every slice/metric.
E2E_ROWS = 3000


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for subprocesses: the venv first on PATH (dvc.yaml calls `python`), no
    analytics, no user git config leaking in, and a fixed identity for commits."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "DVC_", "GITHUB_"))}
    env.update(
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        DVC_NO_ANALYTICS="1",
        GIT_AUTHOR_NAME="Test Author",
        GIT_AUTHOR_EMAIL="author@example.com",
        GIT_COMMITTER_NAME="Test Author",
        GIT_COMMITTER_EMAIL="author@example.com",
        GIT_CONFIG_NOSYSTEM="1",
        PYTHONHASHSEED="0",
    )
    env.pop("VIRTUAL_ENV", None)
    if extra:
        env.update(extra)
    return env


def run(
    args: Sequence[str | os.PathLike[str]],
    cwd: Path,
    *,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """Run a real command; on an unexpected exit code show its output in the failure."""
    proc = subprocess.run(
        [os.fspath(a) for a in args],
        cwd=cwd,
        env=clean_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, args))} exited {proc.returncode}\n"
            f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        )
    return proc


def git(repo: Path, *args: str, check: bool = True) -> str:
    return run(["git", *args], repo, check=check).stdout.strip()


def template_files() -> list[str]:
    """Files of the template as a fork would get them: tracked plus untracked-not-ignored."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sorted({f for f in out.split("\0") if f and (REPO_ROOT / f).is_file()})


def set_param(params_file: Path, key: str, value: str) -> None:
    """Replace `key: <value>` (first occurrence, keeping the comment) in a YAML file's text."""
    text = params_file.read_text()
    pattern = re.compile(rf"^(\s*{re.escape(key)}:\s*)([^#\n]*?)(\s*(#.*)?)$", re.MULTILINE)
    new, count = pattern.subn(lambda m: f"{m.group(1)}{value}{m.group(3)}", text, count=1)
    assert count == 1, f"{key} not found in {params_file}"
    params_file.write_text(new)


def fork_files() -> set[str]:
    """Files of the live checkout that a fresh demo copy must not have: the init record, the
    data file `ingest.source` names (and its .dvc file), and the git-tracked outputs of earlier
    pipeline runs (dvc.lock, metrics, plots...), which describe the live data, not the demo's."""
    own = {INIT_STATE}
    live = config.parse_yaml((REPO_ROOT / "params.yaml").read_text(), "params.yaml")
    source = str(live.get("ingest", {}).get("source", "generator"))
    own |= {source, f"{source}.dvc"}
    paths = config.load_params(DEMO_ROOT / "params.yaml").paths
    outputs = ("validation", "feature_spec", "metrics", "slices", "fairness", "benchmark")
    own |= {"dvc.lock", paths.reference, *(getattr(paths, name) for name in outputs)}
    own |= {f for f in template_files() if f.startswith(f"{paths.plots}/")}
    return own


def make_template_repo(dest: Path, *, rows: int = E2E_ROWS) -> Path:
    """Copy the template into `dest` with the demo configuration (tests/demo/ over the live
    files, the fork's own data, init record and outputs left out), shrink the data, and commit
    it on `main`."""
    dest.mkdir(parents=True, exist_ok=True)
    skip = fork_files()
    for rel in template_files():
        if rel in skip:
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / rel, target)
    for rel in DEMO_FILES:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(DEMO_ROOT / rel, dest / rel)
    set_param(dest / "params.yaml", "rows", str(rows))
    git(dest, "init", "-q", "-b", "main")
    git(dest, "config", "user.name", "Test Author")
    git(dest, "config", "user.email", "author@example.com")
    git(dest, "config", "commit.gpgsign", "false")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "template")
    return dest


@pytest.fixture
def template_repo(tmp_path: Path) -> Path:
    """A fresh git repository holding a copy of this template (small data), on `main`."""
    return make_template_repo(tmp_path / "repo")


_REPRODUCED: dict[str, Path] = {}


@pytest.fixture(scope="session")
def reproduced_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A template repo where `dvc repro` has run once and the result is committed.

    Session-scoped because it is the expensive part; tests must copy it (see `clone_of`)
    rather than modify it.
    """
    repo = make_template_repo(tmp_path_factory.mktemp("reproduced") / "repo")
    run(["dvc", "repro", "-q"], repo)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "reproduce pipeline")
    return repo


def clone_of(repo: Path, dest: Path) -> Path:
    """A full copy (work tree, .git and DVC cache) of `repo` that a test may modify."""
    shutil.copytree(repo, dest, symlinks=True)
    return dest


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch copy of the demo's params.yaml and policies/, small data, as the working dir."""
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(DEMO_ROOT / "params.yaml", work / "params.yaml")
    shutil.copytree(DEMO_ROOT / "policies", work / "policies")
    set_param(work / "params.yaml", "rows", "2000")
    monkeypatch.chdir(work)
    return work


@pytest.fixture
def http_dir(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on loopback serving a directory: (base URL, the directory)."""
    root = tmp_path / "served"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
