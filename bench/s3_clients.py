"""S3 benchmark: what a new S3 client costs, against a moto server on loopback.

    python bench/s3_clients.py [--uploads 20]

(a) ``--uploads`` small uploads through ``StorageManager.upload_file`` (one shared client);
(b) the same, each through a store with a client of its own (``make_s3_client``);
(c) ``make_s3_client()`` alone, ``--uploads`` times.

Every client reads botocore's JSON service models through the process's one loader, so
(b) and (c) cost a few milliseconds a client more than (a), not the ~0.2 s a client that
reads the models again would cost. Needs ``moto[server]``.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BUCKET = "bench-bucket"


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(f"{url}/moto-api/", timeout=1)
            return proc, url
        except requests.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"moto did not answer at {url}")


def timed(what: str, n: int, run: Callable[[int], object]) -> None:
    start = time.perf_counter()
    for i in range(n):
        run(i)
    took = time.perf_counter() - start
    print(f"{what}: {took:.3f} s ({took / n * 1000:.1f} ms each)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--uploads", type=int, default=20)
    n = parser.parse_args().uploads
    proc, url = start_moto()
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull, AGENT_S3_ENDPOINT_URL=url,
        AGENT_HOME=tempfile.mkdtemp(prefix="bench-home-"),
    )  # fmt: skip
    try:
        from agent.files.s3 import S3FileStore, make_s3_client
        from agent.files.storage_manager import StorageManager

        make_s3_client().create_bucket(Bucket=BUCKET)
        source = Path(tempfile.mkdtemp(prefix="bench-")) / "small.txt"
        source.write_text("hello")
        timed(
            f"(a) {n} StorageManager.upload_file", n,
            lambda i: StorageManager.upload_file(source, f"s3://{BUCKET}/a/{i}/small.txt"),
        )  # fmt: skip
        timed(
            f"(b) {n} uploads, a client each", n,
            lambda i: S3FileStore(f"s3://{BUCKET}/b", client=make_s3_client()).put_file(
                source, f"{i}.txt"
            ),
        )  # fmt: skip
        timed(f"(c) {n} make_s3_client()", n, lambda i: make_s3_client())
    finally:
        proc.terminate()


if __name__ == "__main__":
    main()
