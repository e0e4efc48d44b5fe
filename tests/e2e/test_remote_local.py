"""The zero-config default remote: `dvc push`/`dvc pull` work in a fresh clone with no setup."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from pipeline.config import parse_yaml
from tests.conftest import REPO_ROOT, VENV_BIN, clone_of, git, run

pytestmark = pytest.mark.e2e

MODEL = "models/model.skops"
DATASET = "data/raw/dataset.parquet"
NO_CREDENTIALS = {  # nothing a cloud client could pick up, and no way to reach one
    "AWS_ACCESS_KEY_ID": "",
    "AWS_SECRET_ACCESS_KEY": "",
    "AWS_ENDPOINT_URL": "",
    "GOOGLE_APPLICATION_CREDENTIALS": "",
    "AZURE_STORAGE_CONNECTION_STRING": "",
}


def workspace(repo: Path) -> dict[str, str]:
    """md5 of every file a user sees (not git's or DVC's private directories)."""
    found = {}
    for path in repo.rglob("*"):
        rel = path.relative_to(repo).as_posix()
        if path.is_file() and not rel.startswith((".git/", ".dvc/tmp/", ".dvc/cache/")):
            found[rel] = hashlib.md5(path.read_bytes()).hexdigest()
    return found


def default_remote(repo: Path) -> tuple[str, Path]:
    """(name, directory) of the default remote; a relative URL is relative to `.dvc/`."""
    name = run(["dvc", "remote", "default"], repo).stdout.strip()
    url = run(["dvc", "config", f"remote.{name}.url"], repo).stdout.strip()
    return name, (repo / ".dvc" / url).resolve()


def lock_md5s(repo: Path) -> dict[str, str]:
    lock = parse_yaml((repo / "dvc.lock").read_text(), "dvc.lock")
    return {
        str(out["path"]): str(out["md5"])
        for stage in lock["stages"].values()
        for out in stage.get("outs", [])
    }


def test_template_ships_a_credential_free_default_remote() -> None:
    config = (REPO_ROOT / ".dvc/config").read_text()
    assert "remote = storage" in config
    assert "url = ../../" in config, "the placeholder must live outside the work tree"
    assert "verify = true" in config
    # Credentials, if a user adds any with `--local`, land in a git-ignored file.
    assert "/config.local" in (REPO_ROOT / ".dvc/.gitignore").read_text().split()


def test_default_remote_push_then_pull_in_a_fresh_clone(
    reproduced_repo: Path, tmp_path: Path
) -> None:
    repo = clone_of(reproduced_repo, tmp_path / "repo")
    name, storage = default_remote(repo)
    assert name == "storage"
    assert storage.parent == tmp_path, "the default remote is a sibling of the clone"
    assert not storage.exists()

    pushed = run(["dvc", "push"], repo, env=NO_CREDENTIALS)
    assert "pushed" in pushed.stdout
    stored = {
        p.relative_to(storage / "files/md5").as_posix().replace("/", "")
        for p in storage.rglob("*")
        if p.is_file()
    }
    md5s = lock_md5s(repo)
    assert {md5s[MODEL], md5s[DATASET]} <= stored

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", os.fspath(repo), os.fspath(clone)], tmp_path)
    assert default_remote(clone) == ("storage", storage), "clones in one folder share it"
    assert not (clone / MODEL).exists()
    run(["dvc", "pull"], clone, env=NO_CREDENTIALS)

    assert workspace(clone) == workspace(repo)
    assert json.loads(run(["dvc", "status", "--json"], clone).stdout) == {}
    assert git(clone, "status", "--porcelain") == ""


def test_make_remote_without_a_url_is_a_usage_error(template_repo: Path) -> None:
    before = (template_repo / ".dvc/config").read_text()
    proc = run(
        ["make", "-o", ".venv/.installed", f"BIN={VENV_BIN}", "remote"],
        template_repo,
        check=False,
        env={"DVC_REMOTE_URL": ""},
    )
    assert proc.returncode != 0
    assert "usage: make remote DVC_REMOTE_URL=s3://bucket/path" in proc.stderr
    assert (template_repo / ".dvc/config").read_text() == before
    assert not (template_repo / ".dvc/config.local").exists()
