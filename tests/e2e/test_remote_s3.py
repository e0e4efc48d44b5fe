"""DVC against a real S3-compatible server (SeaweedFS `weed mini` on loopback, tests/s3server.py).

The remote is switched with the one documented command (`make remote ...`), credentials come
from the environment exactly as CI passes the fork's secrets, and every transfer is real.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.config import parse_yaml
from tests.conftest import VENV_BIN, clean_env, clone_of, git, run, set_param
from tests.s3server import CutoffProxy, S3Server

pytestmark = pytest.mark.e2e


MODEL = "models/model.skops"
DATASET = "data/raw/dataset.parquet"
# Paths DVC writes or keeps for itself, not part of "the state a user has".
SCRATCH = (".git/", ".dvc/tmp/")


def switch_remote(repo: Path, url: str, endpoint: str, *, local: bool = False) -> None:
    """The documented switch: `make remote DVC_REMOTE_URL=... AWS_ENDPOINT_URL=... [LOCAL=1]`.

    `-o` and `BIN=` reuse this venv instead of building one inside the test repository.
    """
    args = [
        "make",
        "--no-print-directory",
        "-o",
        ".venv/.installed",
        f"BIN={VENV_BIN}",
        "remote",
        f"DVC_REMOTE_URL={url}",
        f"AWS_ENDPOINT_URL={endpoint}",
    ]
    if local:
        args.append("LOCAL=1")
    run(args, repo)


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def files(repo: Path, *, exclude: tuple[str, ...] = SCRATCH) -> dict[str, str]:
    """md5 of every file under `repo`, by relative path, minus the excluded prefixes."""
    found = {}
    for path in repo.rglob("*"):
        rel = path.relative_to(repo).as_posix()
        if path.is_file() and not rel.startswith(exclude):
            found[rel] = md5_of(path)
    return found


def workspace(repo: Path) -> dict[str, str]:
    """What a user sees: the work tree, without git's and DVC's private directories."""
    return files(repo, exclude=(*SCRATCH, ".dvc/cache/", ".dvc/config.local"))


def lock_md5(repo: Path, rel: str) -> str:
    lock = parse_yaml((repo / "dvc.lock").read_text(), "dvc.lock")
    for stage in lock["stages"].values():
        for out in stage.get("outs", []):
            if out["path"] == rel:
                return str(out["md5"])
    raise AssertionError(f"{rel} not in dvc.lock")


def object_key(prefix: str, md5: str) -> str:
    """Where DVC 3 stores an object on the remote."""
    return f"{prefix}/files/md5/{md5[:2]}/{md5[2:]}"


def assert_remote_objects_intact(server: S3Server, prefix: str) -> list[str]:
    """Every object under `prefix` hashes to its own name (no truncated upload survived)."""
    keys = server.keys(f"{prefix}/files/md5/")
    client = server.client()
    for key in keys:
        body = client.get_object(Bucket=server.bucket, Key=key)["Body"].read()
        name = "".join(key.split("/files/md5/")[1].split("/")).removesuffix(".dir")
        assert hashlib.md5(body).hexdigest() == name, f"remote object {key} is corrupt"
    return keys


def dvc_status(repo: Path) -> object:
    return json.loads(run(["dvc", "status", "--json"], repo).stdout)


def fresh_clone(origin: Path, dest: Path) -> Path:
    run(["git", "clone", "-q", os.fspath(origin), os.fspath(dest)], dest.parent)
    return dest


def test_push_then_pull_in_a_fresh_clone_is_byte_identical(
    s3_server: S3Server, reproduced_repo: Path, tmp_path: Path
) -> None:
    repo = clone_of(reproduced_repo, tmp_path / "repo")
    prefix = "roundtrip"
    switch_remote(repo, s3_server.url(prefix), s3_server.endpoint)
    git(repo, "commit", "-q", "-am", "remote: s3")  # what a fork commits: URL, no credentials
    committed = git(repo, "show", "HEAD:.dvc/config")
    assert s3_server.url(prefix) in committed
    assert "verify = true" in committed
    assert s3_server.secret_key not in committed
    assert s3_server.access_key not in committed

    # The server checks signatures: a wrong secret is refused and nothing is uploaded.
    wrong = {**s3_server.credentials_env(), "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    refused = run(["dvc", "push"], repo, check=False, env=wrong)
    assert refused.returncode != 0
    assert s3_server.keys(f"{prefix}/") == []

    run(["dvc", "push"], repo, env=s3_server.credentials_env())
    keys = assert_remote_objects_intact(s3_server, prefix)
    assert object_key(prefix, lock_md5(repo, MODEL)) in keys
    assert object_key(prefix, lock_md5(repo, DATASET)) in keys

    clone = fresh_clone(repo, tmp_path / "clone")
    assert not (clone / MODEL).exists()
    assert not (clone / DATASET).exists()
    run(["dvc", "pull"], clone, env=s3_server.credentials_env())

    assert workspace(clone) == workspace(repo)
    assert md5_of(clone / MODEL) == lock_md5(repo, MODEL)
    assert md5_of(clone / DATASET) == lock_md5(repo, DATASET)
    assert dvc_status(clone) == {}


def write_python_shim(directory: Path, log: Path) -> Path:
    """A `python` first on PATH that logs each stage command and refuses to train."""
    directory.mkdir()
    shim = directory / "python"
    shim.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> "{log}"\n'
        'case "$*" in *"-m pipeline train"*)\n'
        '  echo "train must come from the run-cache, not run again" >&2; exit 97;;\n'
        "esac\n"
        f'exec "{VENV_BIN / "python"}" "$@"\n'
    )
    shim.chmod(0o755)
    return directory


def test_run_cache_from_one_clone_skips_training_in_another(
    s3_server: S3Server, reproduced_repo: Path, tmp_path: Path
) -> None:
    prefix = "runcache"
    # Clone A (a CI run on a PR): new hyperparameters, trains, pushes outputs and run-cache.
    first = clone_of(reproduced_repo, tmp_path / "first")
    switch_remote(first, s3_server.url(prefix), s3_server.endpoint, local=True)
    set_param(first / "params.yaml", "max_iter", "40")
    trained = run(["dvc", "repro", "train"], first)
    assert "Running stage 'train'" in trained.stdout
    run(["dvc", "push", "--run-cache"], first, env=s3_server.credentials_env())
    assert s3_server.keys(f"{prefix}/runs/"), "no run-cache entry was pushed"

    # Clone B (another runner, empty cache): same change; training must not run again.
    second = fresh_clone(reproduced_repo, tmp_path / "second")
    switch_remote(second, s3_server.url(prefix), s3_server.endpoint, local=True)
    set_param(second / "params.yaml", "max_iter", "40")
    log = tmp_path / "python-calls.log"
    shim = write_python_shim(tmp_path / "shim", log)
    env = {
        **s3_server.credentials_env(),
        "PATH": f"{shim}{os.pathsep}{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
    }
    proc = run(["dvc", "repro", "--pull", "--allow-missing"], second, env=env)

    assert "Stage 'train' is cached - skipping run, checking out outputs" in proc.stdout
    calls = log.read_text().splitlines() if log.exists() else []
    assert "-m pipeline evaluate" in calls, "the shim was not on PATH: the test proves nothing"
    assert not [c for c in calls if "pipeline train" in c], calls
    assert md5_of(second / MODEL) == md5_of(first / MODEL)
    assert lock_md5(second, MODEL) == lock_md5(first, MODEL) != lock_md5(reproduced_repo, MODEL)


@pytest.fixture
def proxy(s3_server: S3Server) -> Iterator[CutoffProxy]:
    """A cut-off proxy in front of the server; the server is running again afterwards."""
    front = CutoffProxy(s3_server.ports["s3.port"])
    try:
        yield front
    finally:
        front.close()
        if not s3_server.running:
            s3_server.start()


def test_server_dying_mid_push_fails_cleanly_and_retry_succeeds(
    s3_server: S3Server, proxy: CutoffProxy, reproduced_repo: Path, tmp_path: Path
) -> None:
    prefix = "outage"
    repo = clone_of(reproduced_repo, tmp_path / "repo")
    switch_remote(repo, s3_server.url(prefix), proxy.endpoint, local=True)
    proxy.hold_after = 64 * 1024  # let the push start, then freeze it mid-upload
    assert (repo / MODEL).stat().st_size > 4 * proxy.hold_after, "push too small to interrupt"
    before = files(repo)
    status_before = dvc_status(repo)
    git_before = git(repo, "status", "--porcelain")

    # botocore's own retries would only wait out the outage (~1 min); s3fs still retries.
    env = clean_env({**s3_server.credentials_env(), "AWS_MAX_ATTEMPTS": "1"})
    push = subprocess.Popen(
        ["dvc", "push"],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proxy.tripped.wait(timeout=120), "the push never started uploading"
        s3_server.kill()  # the server crashes while an upload is in flight
        proxy.cut()
        out, err = push.communicate(timeout=300)
    finally:
        if push.poll() is None:
            push.kill()
            push.wait()

    assert push.returncode != 0, out + err
    assert "failed to push data to the cloud" in err, err
    assert "failed to upload" in err, err
    assert f"127.0.0.1:{proxy.port}" in err, "the error should name the endpoint"
    assert files(repo) == before, "a failed push changed the workspace or the cache"
    assert dvc_status(repo) == status_before
    assert git(repo, "status", "--porcelain") == git_before

    s3_server.start()  # same ports, same data directory
    proxy.hold_after = None
    run(["dvc", "push"], repo, env=s3_server.credentials_env())
    assert (
        json.loads(
            run(
                ["dvc", "status", "--cloud", "--json"], repo, env=s3_server.credentials_env()
            ).stdout
        )
        == {}
    )
    keys = assert_remote_objects_intact(s3_server, prefix)
    assert object_key(prefix, lock_md5(repo, MODEL)) in keys
    assert files(repo) == before


def test_verify_detects_an_object_tampered_on_the_remote(
    s3_server: S3Server, reproduced_repo: Path, tmp_path: Path
) -> None:
    prefix = "tamper"
    repo = clone_of(reproduced_repo, tmp_path / "repo")
    switch_remote(repo, s3_server.url(prefix), s3_server.endpoint, local=True)
    run(["dvc", "push"], repo, env=s3_server.credentials_env())
    model_md5 = lock_md5(repo, MODEL)
    tampered = b"PK\x03\x04 not the model that was pushed" * 64
    s3_server.client().put_object(
        Bucket=s3_server.bucket, Key=object_key(prefix, model_md5), Body=tampered
    )

    clone = fresh_clone(repo, tmp_path / "clone")
    switch_remote(clone, s3_server.url(prefix), s3_server.endpoint, local=True)
    assert run(["dvc", "config", "remote.storage.verify"], clone).stdout.strip() == "true"
    pulled = run(["dvc", "pull"], clone, check=False, env=s3_server.credentials_env())

    assert pulled.returncode != 0, pulled.stdout + pulled.stderr
    assert MODEL in pulled.stderr, pulled.stderr
    assert not (clone / MODEL).exists(), "tampered bytes reached the workspace"
    cached = files(clone / ".dvc/cache/files/md5", exclude=())
    assert all(rel.replace("/", "") == md5 for rel, md5 in cached.items()), "cache poisoned"
    assert model_md5 not in {rel.replace("/", "") for rel in cached}
    assert md5_of(clone / DATASET) == lock_md5(repo, DATASET), "untouched objects still arrive"

    # Why the template turns `verify` on: without it the same pull succeeds and the tampered
    # bytes land in the workspace and the cache under the model's hash.
    run(["dvc", "remote", "modify", "--local", "storage", "verify", "false"], clone)
    unverified = run(["dvc", "pull"], clone, check=False, env=s3_server.credentials_env())
    assert unverified.returncode == 0
    assert (clone / MODEL).read_bytes() == tampered
