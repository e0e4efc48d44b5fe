"""A GitHub stand-in for the workflow tests: the REST API the workflows call and a git remote.

It is the GitHub instance `https://github.localhost` (REST at `/api/v3`, git at
`/OWNER/REPO.git`), so the real clients talk to it unchanged: `actions/checkout` (git fetch),
`actions/upload-artifact` and `download-artifact` (REST), CML
(`--repo=https://github.localhost/OWNER/REPO`), plain `git push`, and the `gh` CLI, which
treats `github.localhost` like github.com (it reads GH_TOKEN) and calls
`http://api.github.localhost/`. The runner (`act --github-instance`) points every
`GITHUB_*_URL` there. A `.localhost` name is what lets the artifact actions run (they refuse
other GitHub Enterprise hosts) and is never resolved by DNS: clients reach it through the
stand-in's own proxy (`HTTPS_PROXY`/`HTTP_PROXY` on loopback), which serves those two hosts and
refuses, and records, every other destination, so nothing a workflow does can leave the machine
unnoticed. The certificate is made per instance; clients trust it through `SSL_CERT_FILE` (Go),
`NODE_EXTRA_CA_CERTS` (Node) and `GIT_SSL_CAINFO` (git).

Every request is recorded (method, path, query, JSON body, the token that authenticated it).
The repository is private: every call, git included, needs a known token, as a private
repository on GitHub does. What it keeps: pull requests, issue comments, reviews, and the
artifacts of workflow runs (read from the directory `act --artifact-server-path` writes). The
git remote is a real bare repository served by `git http-backend`.
"""

from __future__ import annotations

import base64
import json
import os
import re
import select
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import certifi

HOST = "127.0.0.1"
SERVER_NAME = "github.localhost"
MAX_BODY = 64 << 20  # bytes; a push of the small test repository is far below this


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # without the /api/v3 prefix for REST calls
    query: dict[str, list[str]]
    body: Any  # parsed JSON for REST writes, else None
    token: str | None  # the token that authenticated the call
    status: int
    kind: str  # "rest" | "git" | "blob"


@dataclass
class PullRequest:
    number: int
    title: str
    head_ref: str
    head_sha: str
    base_ref: str
    head_repo: str  # owner/name of the head repository (a fork's differs)
    user: str = "contributor"
    state: str = "open"
    merged_at: str | None = None
    merge_commit_sha: str | None = None
    body: str = ""
    created_by_token: str | None = None


@dataclass
class Comment:
    id: int
    issue: int
    body: str
    user: str


@dataclass
class GitHubStandIn:
    root: Path
    owner: str = "acme"
    name: str = "ml-project"
    # The job token (`secrets.GITHUB_TOKEN`) and who it acts as.
    token: str = "ghs_standinjobtoken000000000000000000"
    bot: str = "github-actions[bot]"
    # Tokens allowed to read (all of these) and to write (write_tokens).
    extra_tokens: dict[str, str] = field(default_factory=dict)  # token -> login
    # GitHub refuses PR creation by the job token unless the repository allows it.
    actions_can_create_prs: bool = True

    requests: list[Request] = field(default_factory=list)
    pulls: dict[int, PullRequest] = field(default_factory=dict)
    comments: dict[int, Comment] = field(default_factory=dict)
    reviews: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    artifacts_dir: Path | None = None  # act's --artifact-server-path
    refused: list[str] = field(default_factory=list)  # proxy destinations refused
    port: int = 0  # the TLS server's loopback port (clients use the proxy)
    proxy_port: int = 0
    _server: ThreadingHTTPServer | None = None
    _proxy: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # ------------------------------------------------------------------ lifecycle

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    @property
    def host(self) -> str:
        return SERVER_NAME

    @property
    def url(self) -> str:
        return f"https://{self.host}"

    @property
    def git_dir(self) -> Path:
        return self.root / "git" / self.owner / f"{self.name}.git"

    @property
    def ca_file(self) -> Path:
        return self.root / "tls" / "cert.pem"

    @property
    def bundle(self) -> Path:
        return self.root / "tls" / "bundle.pem"

    def start(self) -> None:
        self.git_dir.parent.mkdir(parents=True, exist_ok=True)
        if not self.git_dir.exists():
            _git(self.root, "init", "-q", "--bare", "-b", "main", str(self.git_dir))
        _make_certificate(self.root / "tls")
        # Clients that take one CA file (SSL_CERT_FILE replaces the system's roots for Go, uv
        # and Python) get the system's roots plus this server's: pip's index stays reachable.
        paths = ssl.get_default_verify_paths()
        system = Path(paths.cafile or paths.openssl_cafile)
        roots = system.read_text() if system.is_file() else Path(certifi.where()).read_text()
        self.bundle.write_text(roots + "\n" + self.ca_file.read_text())
        handler = type("Handler", (_Handler,), {"standin": self})
        server = ThreadingHTTPServer((HOST, 0), handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.ca_file, self.root / "tls" / "key.pem")
        server.socket = context.wrap_socket(server.socket, server_side=True)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, name="github-standin", daemon=True).start()
        proxy_handler = type("Proxy", (_ProxyHandler,), {"standin": self})
        proxy = ThreadingHTTPServer((HOST, 0), proxy_handler)
        proxy.daemon_threads = True
        self.proxy_port = proxy.server_address[1]
        self._proxy = proxy
        threading.Thread(target=proxy.serve_forever, name="github-proxy", daemon=True).start()

    def stop(self) -> None:
        for server in (self._server, self._proxy):
            if server is not None:
                server.shutdown()
                server.server_close()
        self._server = self._proxy = None

    def client_env(self) -> dict[str, str]:
        """Environment that makes git, gh and Node trust this server and talk to it."""
        proxy = f"http://{HOST}:{self.proxy_port}"
        return {
            "HTTPS_PROXY": proxy,
            "https_proxy": proxy,
            "HTTP_PROXY": proxy,
            "http_proxy": proxy,
            # act's artifact and cache servers listen on 127.0.0.1: reached directly. (Not
            # "localhost": curl and Node would match github.localhost to it and skip the proxy.)
            "NO_PROXY": "127.0.0.1",
            "no_proxy": "127.0.0.1",
            "GIT_SSL_CAINFO": str(self.bundle),
            "NODE_EXTRA_CA_CERTS": str(self.ca_file),
            "SSL_CERT_FILE": str(self.bundle),
            "GH_HOST": self.host,
            "GIT_TERMINAL_PROMPT": "0",
        }

    # ------------------------------------------------------------------ state helpers

    def login_of(self, token: str | None) -> str | None:
        if token == self.token:
            return self.bot
        return self.extra_tokens.get(token or "")

    def refs(self) -> dict[str, str]:
        """Every ref of the remote: name -> object id (annotated tags peeled to the tag)."""
        out = _git(self.git_dir, "for-each-ref", "--format=%(refname) %(objectname)")
        return dict(line.split(" ", 1) for line in out.splitlines() if line)

    def tag_message(self, tag: str) -> str:
        return _git(self.git_dir, "tag", "-l", "--format=%(contents)", tag)

    def commit_of(self, ref: str) -> str:
        return _git(self.git_dir, "rev-parse", f"{ref}^{{commit}}").strip()

    def open_pull(self, number: int, **kwargs: Any) -> PullRequest:
        """Record a pull request whose head and merge refs are already in the remote."""
        pr = PullRequest(number=number, **kwargs)
        with self._lock:
            self.pulls[number] = pr
        return pr

    def rest_calls(self, method: str | None = None, pattern: str = "") -> list[Request]:
        return [
            r
            for r in self.requests
            if r.kind == "rest"
            and (method is None or r.method == method)
            and re.search(pattern, r.path)
        ]

    def git_calls(self, service: str) -> list[Request]:
        return [r for r in self.requests if r.kind == "git" and service in r.path]

    def unknown_calls(self) -> list[Request]:
        """Calls this stand-in does not implement (404 by route): a test should have none."""
        return [r for r in self.requests if r.status == 404 and r.kind == "rest"]

    def _artifact_zip(self, run_id: int, name: str) -> Path | None:
        if self.artifacts_dir is None or not re.fullmatch(r"[A-Za-z0-9._-]+", name):
            return None
        path = self.artifacts_dir / str(run_id) / name / f"{name}.zip"
        return path if path.is_file() else None

    def _artifacts_of(self, run_id: int) -> list[dict[str, Any]]:
        if self.artifacts_dir is None:
            return []
        run_dir = self.artifacts_dir / str(run_id)
        found = []
        for zip_path in sorted(run_dir.glob("*/*.zip")) if run_dir.is_dir() else []:
            name = zip_path.parent.name
            found.append(
                {
                    "id": run_id * 1000 + len(found) + 1,
                    "node_id": f"A_{run_id}_{name}",
                    "name": name,
                    "size_in_bytes": zip_path.stat().st_size,
                    "archive_download_url": f"{self.url}/api/v3/repos/{self.full_name}"
                    f"/actions/artifacts/{run_id * 1000 + len(found) + 1}/zip",
                    "expired": False,
                    "created_at": _now(),
                    "updated_at": _now(),
                    "workflow_run": {"id": run_id},
                    "digest": None,
                }
            )
        return found

    def pull_json(self, pr: PullRequest) -> dict[str, Any]:
        base_sha = self.commit_of(f"refs/heads/{pr.base_ref}")
        return {
            "number": pr.number,
            "id": pr.number,
            "state": pr.state if pr.merged_at is None else "closed",
            "title": pr.title,
            "body": pr.body,
            "user": {"login": pr.user},
            "html_url": f"{self.url}/{self.full_name}/pull/{pr.number}",
            "url": f"{self.url}/api/v3/repos/{self.full_name}/pulls/{pr.number}",
            "head": {
                "ref": pr.head_ref,
                "sha": pr.head_sha,
                "label": f"{pr.head_repo.split('/')[0]}:{pr.head_ref}",
                "repo": {"full_name": pr.head_repo},
            },
            "base": {
                "ref": pr.base_ref,
                "sha": base_sha,
                "label": f"{self.owner}:{pr.base_ref}",
                "repo": {"full_name": self.full_name},
            },
            "merged_at": pr.merged_at,
            "merge_commit_sha": pr.merge_commit_sha,
        }

    # ------------------------------------------------------------------ REST routes

    def rest(self, method: str, path: str, query: dict[str, list[str]], body: Any, login: str):
        """(status, json, extra headers) for a REST call by `login`."""
        repo = re.escape(self.full_name)
        m = re.fullmatch(rf"/repos/{repo}(/.*)?", path)
        if m is None:
            if path == "/user":
                return 200, {"login": login, "id": 1, "type": "User"}, {}
            if m := re.fullmatch(r"/users/([A-Za-z0-9-]+(?:\[bot\])?)", path):
                return 200, {"login": m.group(1), "id": 2, "type": "User"}, {}
            return 404, {"message": "Not Found"}, {}
        sub = m.group(1) or ""
        if sub == "" and method == "GET":
            return (
                200,
                {
                    "full_name": self.full_name,
                    "name": self.name,
                    "owner": {"login": self.owner},
                    "default_branch": "main",
                    "private": True,
                    "html_url": f"{self.url}/{self.full_name}",
                },
                {},
            )
        if (m := re.fullmatch(r"/pulls/(\d+)", sub)) and method == "GET":
            pr = self.pulls.get(int(m.group(1)))
            return (200, self.pull_json(pr), {}) if pr else (404, {"message": "Not Found"}, {})
        if sub == "/pulls" and method == "GET":
            state = (query.get("state") or ["open"])[0]
            head = (query.get("head") or [""])[0]
            items = [
                self.pull_json(pr)
                for pr in sorted(self.pulls.values(), key=lambda p: p.number)
                if (state == "all" or self.pull_json(pr)["state"] == state)
                and (not head or f"{self.owner}:{pr.head_ref}" == head)
            ]
            return 200, _page(items, query), {}
        if sub == "/pulls" and method == "POST":
            if not self.actions_can_create_prs and login == self.bot:
                refused = "GitHub Actions is not permitted to create or approve pull requests."
                return 403, {"message": refused}, {}
            head_ref = str(body.get("head", ""))
            try:
                head_sha = self.commit_of(f"refs/heads/{head_ref}")
            except subprocess.CalledProcessError:
                return 422, {"message": "Validation Failed", "errors": [{"field": "head"}]}, {}
            with self._lock:
                number = max([*self.pulls, 0]) + 1
                pr = PullRequest(
                    number=number,
                    title=str(body.get("title", "")),
                    body=str(body.get("body", "")),
                    head_ref=head_ref,
                    head_sha=head_sha,
                    base_ref=str(body.get("base", "main")),
                    head_repo=self.full_name,
                    user=login,
                )
                self.pulls[number] = pr
            return 201, self.pull_json(pr), {}
        if (m := re.fullmatch(r"/pulls/(\d+)/commits", sub)) and method == "GET":
            pr = self.pulls.get(int(m.group(1)))
            if pr is None:
                return 404, {"message": "Not Found"}, {}
            shas = _git(
                self.git_dir, "rev-list", "--reverse", f"refs/heads/{pr.base_ref}..{pr.head_sha}"
            )
            return 200, _page([{"sha": s} for s in shas.split()], query), {}
        if (m := re.fullmatch(r"/pulls/(\d+)/reviews", sub)) and method == "GET":
            return 200, _page(self.reviews.get(int(m.group(1)), []), query), {}
        if (m := re.fullmatch(r"/commits/([0-9a-f]{40})/pulls", sub)) and method == "GET":
            sha = m.group(1)
            items = [
                self.pull_json(pr)
                for pr in self.pulls.values()
                if sha in {pr.merge_commit_sha, pr.head_sha}
            ]
            return 200, items, {}
        if (m := re.fullmatch(r"/issues/(\d+)/comments", sub)) and method == "GET":
            issue = int(m.group(1))
            items = [
                {"id": c.id, "body": c.body, "user": {"login": c.user}}
                for c in sorted(self.comments.values(), key=lambda c: c.id)
                if c.issue == issue
            ]
            return 200, _page(items, query), {}
        if (m := re.fullmatch(r"/issues/(\d+)/comments", sub)) and method == "POST":
            issue = int(m.group(1))
            if issue not in self.pulls:
                return 404, {"message": "Not Found"}, {}
            with self._lock:
                cid = 9000 + len(self.comments) + 1
                self.comments[cid] = Comment(cid, issue, str(body.get("body", "")), login)
            return 201, self._comment_json(cid), {}
        if (m := re.fullmatch(r"/issues/comments/(\d+)", sub)) and method == "PATCH":
            cid = int(m.group(1))
            if cid not in self.comments:
                return 404, {"message": "Not Found"}, {}
            self.comments[cid].body = str(body.get("body", ""))
            return 200, self._comment_json(cid), {}
        if (m := re.fullmatch(r"/actions/runs/(\d+)/artifacts", sub)) and method == "GET":
            items = self._artifacts_of(int(m.group(1)))
            if name := (query.get("name") or [""])[0]:
                items = [a for a in items if a["name"] == name]
            return 200, {"total_count": len(items), "artifacts": items}, {}
        if (m := re.fullmatch(r"/actions/artifacts/(\d+)/zip", sub)) and method == "GET":
            run_id, index = divmod(int(m.group(1)), 1000)
            items = self._artifacts_of(run_id)
            if not 1 <= index <= len(items):
                return 404, {"message": "Not Found"}, {}
            name = items[index - 1]["name"]
            return 302, None, {"Location": f"{self.url}/_blobs/{run_id}/{name}.zip"}
        return 404, {"message": "Not Found"}, {}

    def _comment_json(self, cid: int) -> dict[str, Any]:
        c = self.comments[cid]
        return {
            "id": c.id,
            "body": c.body,
            "user": {"login": c.user},
            "html_url": f"{self.url}/{self.full_name}/pull/{c.issue}#issuecomment-{c.id}",
        }


def _page(items: list[Any], query: dict[str, list[str]]) -> list[Any]:
    per_page = int((query.get("per_page") or ["30"])[0])
    page = int((query.get("page") or ["1"])[0])
    return items[(page - 1) * per_page : page * per_page]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=60
    ).stdout


def _make_certificate(directory: Path) -> None:
    """A self-signed certificate for localhost and 127.0.0.1 (made once per directory)."""
    if (directory / "cert.pem").is_file():
        return
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", f"/CN={SERVER_NAME}",
            "-addext", f"subjectAltName=DNS:{SERVER_NAME},DNS:*.{SERVER_NAME},IP:127.0.0.1",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-keyout", str(directory / "key.pem"), "-out", str(directory / "cert.pem"),
        ],
        capture_output=True,
        check=True,
        timeout=60,
    )  # fmt: skip


class _Handler(BaseHTTPRequestHandler):
    standin: GitHubStandIn
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the requests list is the log

    def _token(self) -> str | None:
        header = self.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() in {"token", "bearer"}:
            return value.strip() or None
        if scheme.lower() == "basic":
            try:
                _user, _, password = base64.b64decode(value).decode().partition(":")
            except ValueError:
                return None
            return password or None
        return None

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            total = 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                total += size
                if total > MAX_BODY:
                    raise ValueError("body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise ValueError("body too large")
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _record(self, kind: str, path: str, query: Any, body: Any, token: Any, status: int):
        with self.standin._lock:
            self.standin.requests.append(
                Request(self.command, path, query, body, token, status, kind)
            )

    def _handle(self) -> None:
        standin = self.standin
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        raw = self._body()
        token = self._token()
        login = standin.login_of(token)
        if parts.path.startswith("/api/v3/"):
            path = parts.path[len("/api/v3") :].rstrip("/")
            body = json.loads(raw) if raw.strip() else None
            if login is None:
                status, payload, headers = 401, {"message": "Bad credentials"}, {}
            else:
                status, payload, headers = standin.rest(self.command, path, query, body, login)
            self._record("rest", path, query, body, token, status)
            if payload is not None:  # a redirect has no body and, as on GitHub, no JSON type
                headers = {"Content-Type": "application/json; charset=utf-8", **headers}
            data = b"" if payload is None else json.dumps(payload).encode()
            self._send(status, data, headers)
            return
        if m := re.fullmatch(r"/_blobs/(\d+)/([A-Za-z0-9._-]+)\.zip", parts.path):
            zip_path = standin._artifact_zip(int(m.group(1)), m.group(2))
            self._record("blob", parts.path, query, None, token, 200 if zip_path else 404)
            if zip_path is None:
                self._send(404, b"", {})
            else:
                self._send(200, zip_path.read_bytes(), {"Content-Type": "application/zip"})
            return
        git_path = re.fullmatch(
            rf"/{re.escape(standin.full_name)}(?:\.git)?(/(?:info/refs|git-upload-pack|git-receive-pack))",
            parts.path,
        )
        if git_path is None:
            self._record("rest", parts.path, query, None, token, 404)
            self._send(404, b"", {})
            return
        if login is None:
            self._record("git", parts.path + "?" + parts.query, query, None, token, 401)
            self._send(401, b"", {"WWW-Authenticate": 'Basic realm="GitHub"'})
            return
        status, headers, payload = self._git_backend(git_path.group(1), parts.query, raw, login)
        self._record("git", parts.path + "?" + parts.query, query, None, token, status)
        self._send(status, payload, headers)

    def _git_backend(self, sub: str, query: str, raw: bytes, login: str):
        standin = self.standin
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(standin.git_dir.parent.parent),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": f"/{standin.owner}/{standin.name}.git{sub}",
            "QUERY_STRING": query,
            "REQUEST_METHOD": self.command,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(raw)),
            "REMOTE_USER": login,  # enables receive-pack for an authenticated caller
            "REMOTE_ADDR": HOST,
            "GIT_HTTP_MAX_REQUEST_BUFFER": str(MAX_BODY),
        }
        if encoding := self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = encoding
        if protocol := self.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = protocol
        proc = subprocess.run(
            ["git", "http-backend"], input=raw, env=env, capture_output=True, timeout=120
        )
        head, _, payload = proc.stdout.partition(b"\r\n\r\n")
        status = 200
        headers: dict[str, str] = {}
        for line in head.decode("latin-1").split("\r\n"):
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.strip().split()[0])
            elif key:
                headers[key] = value.strip()
        return status, headers, payload

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()


class _ProxyHandler(_Handler):
    """The clients' proxy (HTTPS_PROXY and HTTP_PROXY, loopback).

    CONNECT to the stand-in's host is tunnelled to its TLS server. A plain-HTTP request for
    `api.github.localhost` is the `gh` CLI (for the host `github.localhost` it calls
    `http://api.<host>/`, the REST API without the /api/v3 prefix) and is served here. Every
    other destination is refused with 403 and recorded.
    """

    def _refuse(self) -> None:
        with self.standin._lock:
            self.standin.refused.append(f"{self.command} {self.path}")
        self.close_connection = True
        self._send(403, b"", {})

    def do_CONNECT(self) -> None:
        if self.path not in {f"{SERVER_NAME}:443", SERVER_NAME}:
            self._refuse()
            return
        upstream = socket.create_connection((HOST, self.standin.port), timeout=30)
        self.send_response(200, "Connection established")
        self.end_headers()
        self.close_connection = True
        client = self.connection
        with upstream:
            sockets = [client, upstream]
            while True:
                readable, _, broken = select.select(sockets, [], sockets, 300)
                if broken or not readable:
                    return
                for sock in readable:
                    data = sock.recv(1 << 16)
                    if not data:
                        return
                    (upstream if sock is client else client).sendall(data)

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        if parts.scheme != "http" or parts.netloc != f"api.{SERVER_NAME}":
            self._refuse()
            return
        self.path = f"/api/v3{parts.path}" + (f"?{parts.query}" if parts.query else "")
        super()._handle()


@contextmanager
def github_standin(root: Path, **kwargs: Any) -> Iterator[GitHubStandIn]:
    standin = GitHubStandIn(root=root, **kwargs)
    standin.start()
    try:
        yield standin
    finally:
        standin.stop()
