"""Fixtures for the SDK integration tests: one Conclave server per test session.

The server binary comes from ``CONCLAVE_BIN``. It is started as
``$CONCLAVE_BIN serve`` with a fresh data directory, free loopback ports and a
random API key/secret, all passed through the environment, and is stopped at
the end of the session. Only loopback addresses are used.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator, Optional, TypeVar

import pytest

from sdk_helpers import Server

T = TypeVar("T")

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
# Upper bound for one test's whole scenario; each step inside has its own,
# shorter bound, so this only catches a hang the steps did not foresee.
SCENARIO_TIMEOUT_S = 240.0

_server: Optional[Server] = None


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Media engines of the test server: more than one, so that the SDKs' rooms
# are placed on engines as in a real deployment.
MEDIA_WORKERS = 2


def _free_udp_ports(count: int) -> int:
    """The first of `count` consecutive loopback UDP ports that were free together."""
    for _ in range(100):
        held = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM)]
        try:
            held[0].bind(("127.0.0.1", 0))
            first = int(held[0].getsockname()[1])
            if first + count > 65536:
                continue
            for i in range(1, count):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                held.append(s)
                s.bind(("127.0.0.1", first + i))
            return first
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError(f"found no {count} consecutive free UDP ports on loopback")


def _tail(path: Path, limit: int = 6000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no output captured)"
    if not text.strip():
        return "(empty)"
    return text if len(text) <= limit else "...\n" + text[-limit:]


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    """A running Conclave server, shared by every test of the session."""
    global _server
    binary = os.environ.get("CONCLAVE_BIN", "").strip()
    if not binary:
        pytest.fail(
            "CONCLAVE_BIN is not set: point it at the conclave server binary, e.g. "
            "CONCLAVE_BIN=target/debug/conclave-server python3 -m pytest tests/sdk -q",
            pytrace=False,
        )
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        pytest.fail(f"CONCLAVE_BIN={binary!r} is not an executable file", pytrace=False)

    work = Path(tempfile.mkdtemp(prefix="conclave-sdk-"))
    data_dir = work / "data"
    data_dir.mkdir()
    stdout_path = work / "server.stdout.log"
    stderr_path = work / "server.stderr.log"
    http_port = _free_port(socket.SOCK_STREAM)
    udp_port = _free_udp_ports(MEDIA_WORKERS)
    api_key = "sdk-test-key"
    api_secret = secrets.token_urlsafe(36)  # 48 characters

    env = dict(os.environ)
    env.update(
        {
            "CONCLAVE_SERVER_DATA_DIR": str(data_dir),
            "CONCLAVE_HTTP_LISTEN": f"127.0.0.1:{http_port}",
            "CONCLAVE_MEDIA_UDP_PORT": str(udp_port),
            "CONCLAVE_MEDIA_WORKERS": str(MEDIA_WORKERS),
            "CONCLAVE_MEDIA_ANNOUNCE": "127.0.0.1",
            "CONCLAVE_AUTH_API_KEY": api_key,
            "CONCLAVE_AUTH_API_SECRET": api_secret,
            # Debug logging includes addresses from the ICE layer, so the
            # log redaction is put to the test (test_server_ops.py).
            "CONCLAVE_LOG_LEVEL": "debug,is=debug",
            "CONCLAVE_LOG_FORMAT": "text",
            "NO_COLOR": "1",
        }
    )
    stdout_f = open(stdout_path, "wb")
    stderr_f = open(stderr_path, "wb")
    proc = subprocess.Popen(
        [binary, "serve"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=stdout_f,
        stderr=stderr_f,
        cwd=str(work),
    )
    srv = Server(
        http_url=f"http://127.0.0.1:{http_port}",
        ws_url=f"ws://127.0.0.1:{http_port}",
        api_key=api_key,
        api_secret=api_secret,
        udp_port=udp_port,
        data_dir=data_dir,
        stderr_path=stderr_path,
        proc=proc,
    )

    def stop() -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT_S)
        stdout_f.close()
        stderr_f.close()

    try:
        ready_url = f"{srv.http_url}/readyz"
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            code = proc.poll()
            if code is not None:
                stop()
                pytest.fail(
                    f"conclave server exited with status {code} before becoming ready.\n"
                    f"--- server stderr ---\n{_tail(stderr_path)}",
                    pytrace=False,
                )
            if _ready(ready_url):
                break
            if time.monotonic() > deadline:
                stop()
                pytest.fail(
                    f"conclave server did not answer 200 on {ready_url} within "
                    f"{READY_TIMEOUT_S:.0f} s.\n--- server stderr ---\n{_tail(stderr_path)}",
                    pytrace=False,
                )
            time.sleep(0.1)

        print(f"\nconclave server ready at {srv.http_url} (udp {udp_port}), logs in {work}")
        _server = srv
        yield srv
    finally:
        _server = None
        stop()
        if os.environ.get("CONCLAVE_SDK_KEEP_LOGS"):
            print(f"conclave server logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="session")
def event_loop_runner() -> Iterator[asyncio.AbstractEventLoop]:
    """One event loop for the whole session: the SDK keeps process-wide state
    bound to the loop that first used it."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield loop
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


@pytest.fixture
def run(
    server: Server, event_loop_runner: asyncio.AbstractEventLoop
) -> Callable[[Awaitable[T]], T]:
    """Runs one coroutine to completion on the session loop, bounded in time."""

    def _run(coro: Awaitable[T], timeout: float = SCENARIO_TIMEOUT_S) -> T:
        async def bounded() -> Any:
            try:
                return await asyncio.wait_for(coro, timeout)
            except asyncio.TimeoutError as e:
                raise AssertionError(
                    f"scenario did not finish within {timeout:.0f} s"
                ) from e

        return event_loop_runner.run_until_complete(bounded())

    return _run


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    """On a failed test, attach the tail of the server's stderr to the report."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and _server is not None and report.when in ("setup", "call"):
        state = (
            "running"
            if _server.proc.poll() is None
            else f"exited with status {_server.proc.returncode}"
        )
        report.sections.append(
            (f"conclave server stderr (server {state})", _tail(_server.stderr_path))
        )
