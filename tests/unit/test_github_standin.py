"""The GitHub stand-in the workflow tests run against: it must refuse what GitHub refuses, or
the act scenarios could pass on calls that fail on GitHub."""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.act_runner import ActResult
from tests.github_standin import SERVER_NAME, GitHubStandIn, github_standin


@pytest.fixture
def standin(tmp_path: Path) -> Iterator[GitHubStandIn]:
    with github_standin(tmp_path / "gh") as github:
        yield github


def _get(github: GitHubStandIn, path: str, token: str | None) -> tuple[int, object]:
    proxy = f"http://127.0.0.1:{github.proxy_port}"
    context = ssl.create_default_context(cafile=str(github.ca_file))
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({"https": proxy}),
        urllib.request.HTTPSHandler(context=context),
    )
    request = urllib.request.Request(f"{github.url}/api/v3{path}")
    if token:
        request.add_header("Authorization", f"token {token}")
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def test_rest_needs_the_token_and_records_each_call(standin: GitHubStandIn) -> None:
    assert _get(standin, f"/repos/{standin.full_name}", None)[0] == 401
    assert _get(standin, f"/repos/{standin.full_name}", "ghs_wrong")[0] == 401
    status, body = _get(standin, f"/repos/{standin.full_name}", standin.token)
    assert status == 200
    assert isinstance(body, dict)
    assert body["default_branch"] == "main"
    assert _get(standin, "/repos/other/repo/pulls/1", standin.token)[0] == 404
    assert [(r.status, r.token) for r in standin.requests] == [
        (401, None),
        (401, "ghs_wrong"),
        (200, standin.token),
        (404, standin.token),
    ]
    assert [r.path for r in standin.unknown_calls()] == ["/repos/other/repo/pulls/1"]


def test_proxy_reaches_only_the_stand_in(standin: GitHubStandIn) -> None:
    for target in ("github.com:443", "api.github.com:443", f"127.0.0.1:{standin.port}"):
        with socket.create_connection(("127.0.0.1", standin.proxy_port), timeout=10) as sock:
            sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
            assert sock.recv(100).startswith(b"HTTP/1.1 403")
    assert standin.refused == [
        "CONNECT github.com:443",
        "CONNECT api.github.com:443",
        f"CONNECT 127.0.0.1:{standin.port}",
    ]


def _git(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_git_remote_needs_the_token_to_push(standin: GitHubStandIn, tmp_path: Path) -> None:
    env = {**os.environ, **standin.client_env(), "GIT_CONFIG_NOSYSTEM": "1"}
    env["GIT_CONFIG_GLOBAL"] = str(tmp_path / "gitconfig")
    work = tmp_path / "work"
    work.mkdir()
    for args in (
        ["init", "-q", "-b", "main"],
        ["-c", "user.name=t", "-c", "user.email=t@e", "commit", "-q", "--allow-empty", "-m", "x"],
    ):
        assert _git(*args, env=env, cwd=work).returncode == 0
    url = f"{standin.url}/{standin.full_name}.git"
    refused = _git("push", "-q", url, "main", env=env, cwd=work)
    assert refused.returncode != 0
    assert standin.refs() == {}
    basic = base64.b64encode(f"x-access-token:{standin.token}".encode()).decode()
    header = f"http.{standin.url}/.extraheader=AUTHORIZATION: basic {basic}"
    pushed = _git("-c", header, "push", "-q", url, "main", env=env, cwd=work)
    assert pushed.returncode == 0, pushed.stderr
    head = _git("rev-parse", "HEAD", env=env, cwd=work).stdout.strip()
    assert standin.refs() == {"refs/heads/main": head}
    calls = standin.git_calls("git-receive-pack")
    assert {(r.status, r.token) for r in calls} == {(401, None), (200, standin.token)}
    assert SERVER_NAME in url


def test_act_json_steps_ignore_the_alignment_padding() -> None:
    lines = [
        {"job": "PR report/Retrain, evaluate, report  ", "step": "Build", "stage": "Main",
         "stepResult": "success"},
        {"job": "PR report/Which checks this PR needs", "step": "List", "stage": "Main",
         "stepResult": "failure"},
        {"job": "PR report/Retrain, evaluate, report  ", "step": "Build", "stage": "Post",
         "stepResult": "success"},
    ]  # fmt: skip
    result = ActResult(1, "plain text\n" + "\n".join(json.dumps(x) for x in lines))
    assert result.steps() == [
        ("Retrain, evaluate, report", "Build", "success"),
        ("Which checks this PR needs", "List", "failure"),
    ]
    assert result.outcome("Build", "Retrain, evaluate, report") == "success"
    assert result.outcome("Missing") is None
    assert result.ran_job("Retrain, evaluate, report")
    assert not result.ran_job("Commit dvc.lock and metrics to the PR branch")
