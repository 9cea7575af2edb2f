"""Operating the server: the token command, metrics, log redaction, TLS."""

from __future__ import annotations

import http.client
import os
import re
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from sdk_helpers import (
    PatternSource,
    connect,
    count_video_frames,
    publish_video,
    safe_disconnect,
    unique_room,
)

IPV4 = re.compile(r"(?<![\w.])\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?![\w])")
JWT = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]+")


def _cli_token(server, *args: str) -> str:
    env = dict(os.environ)
    env.update(
        {
            "CONCLAVE_SERVER_DATA_DIR": str(server.data_dir),
            "CONCLAVE_AUTH_API_KEY": server.api_key,
            "CONCLAVE_AUTH_API_SECRET": server.api_secret,
        }
    )
    out = subprocess.run(
        [os.environ["CONCLAVE_BIN"], "token", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == 0, f"conclave token failed: {out.stderr}"
    return out.stdout.strip()


def test_cli_token_joins_and_metrics_count_media(server, run):
    run(_cli_and_metrics(server))


async def _cli_and_metrics(server) -> None:
    room_name = unique_room("cli")
    token = _cli_token(server, "--room", room_name, "--identity", "cli-user", "--name", "CLI User")
    viewer_token = _cli_token(server, "--room", room_name, "--identity", "viewer", "--no-publish")
    pattern = PatternSource()
    pub_room = viewer_room = None
    try:
        viewer_room, viewer = await connect(server, viewer_token, "viewer")
        assert not viewer_room.local_participant.permissions.can_publish, (
            "a --no-publish token must not allow publishing"
        )
        pub_room, _ = await connect(server, token, "cli-user")
        assert pub_room.local_participant.name == "CLI User"
        pattern.start()
        _, pub = await publish_video(pub_room, pattern)
        track, _, _ = await viewer.wait_for(
            "track_subscribed",
            lambda t, p, who: who.identity == "cli-user" and p.sid == pub.sid,
            what="the viewer to receive the CLI user's video",
        )
        frames, _ = await count_video_frames(track, 5)
        assert frames >= 5, f"only {frames} frames"
        with urllib.request.urlopen(f"{server.http_url}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        values = dict(
            line.split(" ", 1) for line in text.splitlines() if line and not line.startswith("#")
        )
        for name in (
            "conclave_rooms",
            "conclave_participants",
            "conclave_tracks",
            "conclave_media_packets_in_total",
            "conclave_media_bytes_out_total",
            "conclave_rtp_forwarded_total",
            "conclave_nacks_received_total",
            "conclave_plis_received_total",
            "conclave_plis_sent_total",
        ):
            assert name in values, f"{name} missing from /metrics"
        assert int(values["conclave_participants"]) >= 2
        assert int(values["conclave_tracks"]) >= 1
        assert int(values["conclave_rtp_forwarded_total"]) > 0
        assert int(values["conclave_plis_sent_total"]) > 0, "a new subscriber must trigger a keyframe request"
    finally:
        await pattern.stop()
        await safe_disconnect(pub_room)
        await safe_disconnect(viewer_room)


def test_logs_carry_no_addresses_or_tokens(server):
    """Runs after media flowed through the session's server at debug level."""
    text = Path(server.stderr_path).read_text(errors="replace")
    assert "participant joined" in text, "the log is empty: the check would prove nothing"
    assert "<ip>" in text, "no address was redacted: debug logging did not reach the redactor"
    ips = IPV4.findall(text)
    assert not ips, f"IP addresses in the log: {ips[:5]}"
    assert not JWT.findall(text), "an access token appears in the log"


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_https_is_required_beyond_loopback():
    """Listening beyond loopback, the server makes a certificate and speaks only TLS."""
    work = Path(tempfile.mkdtemp(prefix="conclave-tls-"))
    port = _free_port(socket.SOCK_STREAM)
    env = dict(os.environ)
    env.update(
        {
            "CONCLAVE_SERVER_DATA_DIR": str(work),
            "CONCLAVE_HTTP_LISTEN": f"0.0.0.0:{port}",
            "CONCLAVE_MEDIA_UDP_PORT": str(_free_port(socket.SOCK_DGRAM)),
            "CONCLAVE_MEDIA_WORKERS": "1",
            "CONCLAVE_MEDIA_ANNOUNCE": "127.0.0.1",
            "CONCLAVE_MEDIA_BIND": "127.0.0.1",
        }
    )
    err = open(work / "stderr.log", "wb")
    proc = subprocess.Popen(
        [os.environ["CONCLAVE_BIN"], "serve"], env=env, stdout=subprocess.DEVNULL, stderr=err
    )
    try:
        cert = work / "tls" / "cert.pem"
        ctx = ssl.create_default_context(cafile=None)
        deadline = time.monotonic() + 30
        body = None
        headers = None
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"server exited: {(work / 'stderr.log').read_text()}"
            if cert.exists():
                ctx = ssl.create_default_context(cafile=str(cert))
                try:
                    with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", context=ctx, timeout=2) as r:
                        body, headers = r.read(), r.headers
                        break
                except (urllib.error.URLError, OSError):
                    pass
            time.sleep(0.2)
        assert body == b"ok", "no answer over HTTPS with the generated certificate"
        assert "max-age" in headers.get("Strict-Transport-Security", ""), "HSTS header missing"
        assert (work / "keys.toml").stat().st_mode & 0o077 == 0, "keys.toml is readable by others"
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
            raise AssertionError("plain HTTP was answered beyond loopback")
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            # A TLS alert or a closed connection, never an HTTP response.
            assert not isinstance(e, urllib.error.HTTPError), f"plain HTTP got an HTTP answer: {e}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        err.close()
