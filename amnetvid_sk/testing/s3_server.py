"""A real S3 server on localhost for tests and benchmarks: SeaweedFS's ``weed`` (the ``s3`` extra,
``pip install -e '.[s3]'``, which ``make test`` installs), with one identity, on free ports.

Not run: it starts a server process (about a second) and needs the ``weed`` binary.

>>> from amnetvid_sk.testing.s3_server import S3Server, weed_binary
>>> with S3Server("/tmp/seaweedfs", bucket="b") as env:      # doctest: +SKIP
...     ...  # set env (AWS_ACCESS_KEY_ID, ..., AWS_ENDPOINT_URL) and use FeatureStore("s3://b/prefix")

Used by ``tests/test_s3_store.py`` (its session fixture) and ``bench/bench_store_scale.py --s3``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

KEY, SECRET = "AKIAAMNETVIDTEST0001", "amnetvid-test-secret-Zq8x1"


def free_ports(n: int) -> list[int]:
    """``n`` TCP ports of 127.0.0.1 free at the time of the call."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def weed_binary() -> str | None:
    """The ``weed`` executable (on the PATH or beside this Python's), or None."""
    found = shutil.which("weed") or str(Path(sys.executable).with_name("weed"))
    return found if os.access(found, os.X_OK) else None


class S3Server:
    """A SeaweedFS server (master, volume, filer, S3 gateway) in ``folder``, on free localhost ports,
    with one identity (``key``/``secret``). A context manager: entering starts it and waits until the
    gateway makes ``bucket``, and returns the AWS environment variables that reach it (``env``);
    leaving stops it (its data stays in ``folder``). It holds at most ``volumes`` volumes of 64 MB
    (50: 3.2 GB, deleted objects' space included until SeaweedFS vacuums it)."""

    def __init__(self, folder, bucket: str, key: str = KEY, secret: str = SECRET, weed: str | None = None,
                 volumes: int = 50):
        self.folder, self.bucket, self.key, self.secret = Path(folder), bucket, key, secret
        self.volumes = volumes
        self.weed = weed or weed_binary()
        self.proc = self.env = self._log = None

    def start(self) -> dict[str, str]:
        if self.weed is None:
            raise RuntimeError("SeaweedFS's `weed` is not installed, so no S3 server can run here: "
                               "pip install -e '.[s3]' (make test installs it)")
        self.folder.mkdir(parents=True, exist_ok=True)
        config = self.folder / "s3.json"
        config.write_text(json.dumps({"identities": [{"name": "tests", "credentials": [
            {"accessKey": self.key, "secretKey": self.secret}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}))
        m, mg, v, vg, f, fg, s, sg = free_ports(8)
        (self.folder / "data").mkdir(exist_ok=True)
        self._log = open(self.folder / "weed.log", "wb")
        self.proc = subprocess.Popen(
            [self.weed, "server", f"-dir={self.folder / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
             f"-master.port={m}", f"-master.port.grpc={mg}", f"-volume.port={v}", f"-volume.port.grpc={vg}",
             "-filer", f"-filer.port={f}", f"-filer.port.grpc={fg}", "-s3", f"-s3.port={s}",
             f"-s3.port.grpc={sg}", "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={config}",
             "-master.volumeSizeLimitMB=64", f"-volume.max={self.volumes}"],
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        self.env = {"AWS_ACCESS_KEY_ID": self.key, "AWS_SECRET_ACCESS_KEY": self.secret,
                    "AWS_ENDPOINT_URL": f"http://127.0.0.1:{s}", "AWS_REGION": "us-east-1",
                    "AWS_EC2_METADATA_DISABLED": "true"}
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self.env

    def _wait_ready(self, timeout: float = 60) -> None:
        """Until the S3 gateway makes the bucket (the filer and a volume are up by then)."""
        from amnetvid_sk.store import location

        log = self.folder / "weed.log"
        deadline, last = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed exited {self.proc.returncode}:\n{log.read_text()[-3000:]}")
            with mock.patch.dict(os.environ, self.env):
                try:
                    location.make_store(f"s3://{self.bucket}/ready")
                    location.write_whole(f"s3://{self.bucket}/ready/probe", lambda sink: sink.write(b"ok") and 1)
                    return
                except Exception as e:  # not up yet
                    last = e
            time.sleep(0.5)
        raise RuntimeError(f"the S3 server did not start in {timeout} s ({last}):\n{log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:  # its graceful stop waits on its gRPC streams: no data to keep
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> dict[str, str]:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
