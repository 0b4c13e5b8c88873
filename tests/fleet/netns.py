"""Hosts made of Linux network namespaces, for tests of a fleet spread over machines.

A `Network` is a switch (a bridge in a namespace of its own) and hosts, each a namespace
with one veth into the switch and an address on a private /24. The root namespace, where
the test runs, is on no such network: a host reaches another host's address and nothing
else (not PostgreSQL, not anything on the test machine's loopback). Processes are started
in a host with ``ip netns exec``; `Network.close` kills whatever still runs in any of its
namespaces and deletes them (their veths go with them).

PostgreSQL listens on the root namespace's loopback; `UnixSocketRelay` offers it to one
host only, on a unix socket (a path in the shared filesystem, which a network namespace
does not fence off), so the server host reaches it and the agent hosts do not.

Needs root and iproute2 (`netns_support` says what is missing).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: The private subnet of every network (each has its own switch, so they never meet).
SUBNET = "10.77.0"

_PROBE = """
import sys, time, urllib.error, urllib.request
url, deadline = sys.argv[1], time.monotonic() + float(sys.argv[2])
while True:
    try:
        urllib.request.urlopen(url, timeout=1)
        sys.exit(0)
    except urllib.error.HTTPError:
        sys.exit(0)  # it answers: up
    except OSError as exc:
        if time.monotonic() > deadline:
            sys.exit(f"{url} did not answer: {exc}")
        time.sleep(0.05)
"""


def netns_support() -> str | None:
    """None when network namespaces can be made here, else what is missing."""
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) is not installed"
    probe = f"fleet-probe-{uuid.uuid4().hex[:8]}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _ip(*args: str) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")


@dataclass
class Host:
    """One machine of a `Network`: a namespace and its address."""

    name: str
    netns: str
    address: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` as run on this host."""
        return ["ip", "netns", "exec", self.netns, *argv]

    def start(self, argv: Sequence[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        """Start ``argv`` here in a session of its own, output to ``log``."""
        with log.open("ab") as out:
            proc = subprocess.Popen(
                self.command(argv),
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=log.parent,
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def run(self, argv: Sequence[str], env: dict[str, str] | None = None, timeout: float = 300):
        """Run ``argv`` here to its end; the CompletedProcess (text)."""
        return subprocess.run(
            self.command(argv), env=env, capture_output=True, text=True, timeout=timeout
        )

    def wait_http(self, url: str, timeout: float = 30.0) -> None:
        """Wait until ``url`` answers, asked from this host."""
        proc = self.run([sys.executable, "-c", _PROBE, url, str(timeout)], timeout=timeout + 30)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr.strip() or f"{url} did not answer")

    def pids(self) -> list[int]:
        """Every process that runs in this host's namespace."""
        out = subprocess.run(["ip", "netns", "pids", self.netns], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    def kill_all(self) -> None:
        """SIGKILL everything that runs here, and reap what we started."""
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)


class Network:
    """A switch and the hosts plugged into it (see the module doc); close it when done."""

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:8]
        self.switch = f"fleet-{self.tag}-switch"
        self.hosts: list[Host] = []
        self._made: list[str] = []
        self._add_netns(self.switch)
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")

    def _add_netns(self, name: str) -> None:
        _ip("netns", "add", name)
        self._made.append(name)
        _ip("-n", name, "link", "set", "lo", "up")

    def add_host(self, name: str) -> Host:
        """A new host on the switch, with the next free address."""
        host = Host(name, f"fleet-{self.tag}-{name}", f"{SUBNET}.{len(self.hosts) + 2}")
        self._add_netns(host.netns)
        port = f"p{len(self.hosts)}"
        _ip("link", "add", "eth0", "netns", host.netns, "type", "veth",
            "peer", "name", port, "netns", self.switch)  # fmt: skip
        _ip("-n", self.switch, "link", "set", port, "master", "br0", "up")
        _ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
        _ip("-n", host.netns, "link", "set", "eth0", "up")
        self.hosts.append(host)
        return host

    def close(self) -> None:
        """Kill every process on every host, delete every namespace (their veths go too)."""
        for host in self.hosts:
            host.kill_all()
        for name in reversed(self._made):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        self._made.clear()


class UnixSocketRelay:
    """A TCP service of this namespace offered on a unix socket, in a thread of its own.

    The socket is named as libpq looks for one (``DIR/.s.PGSQL.PORT``), so a PostgreSQL
    URL with ``host=DIR`` reaches the server behind it.
    """

    def __init__(self, directory: Path, target: tuple[str, int]):
        self.directory = directory
        self.target = target
        self.path = directory / f".s.PGSQL.{target[1]}"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.AbstractServer | None = None

    def start(self) -> UnixSocketRelay:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        opening = asyncio.start_unix_server(self._relay, path=str(self.path))
        self._server = asyncio.run_coroutine_threadsafe(opening, self._loop).result(10)
        return self

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    def stop(self) -> None:
        if self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self.path.unlink(missing_ok=True)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass  # the other side went away: close ours
    finally:
        writer.close()


def wait_gone(host: Host, timeout: float = 30.0) -> float:
    """Wait until nothing runs on ``host``; the time (``time.time()``) it was seen empty."""
    deadline = time.monotonic() + timeout
    while host.pids():
        if time.monotonic() > deadline:
            raise AssertionError(f"processes still run on {host.name}: {host.pids()}")
        time.sleep(0.02)
    return time.time()
