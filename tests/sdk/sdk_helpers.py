"""Helpers shared by the SDK integration tests: tokens, connections, event
recording with bounded waits, and synthetic audio/video sources."""

from __future__ import annotations

import asyncio
import datetime
import math
import subprocess
import time
import uuid
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from livekit import api, rtc

# Bounds for individual steps, in seconds. Generous: they only bound hangs,
# nothing asserts how fast the server is.
CONNECT_TIMEOUT_S = 30.0
EVENT_TIMEOUT_S = 20.0
MEDIA_TIMEOUT_S = 30.0
DISCONNECT_TIMEOUT_S = 10.0

AUDIO_RATE = 48_000
AUDIO_FRAME_MS = 10
VIDEO_WIDTH = 320
VIDEO_HEIGHT = 240
VIDEO_FPS = 15


@dataclass
class Server:
    """A running Conclave server under test."""

    http_url: str
    ws_url: str
    api_key: str
    api_secret: str
    udp_port: int
    data_dir: Path
    stderr_path: Path
    proc: subprocess.Popen = field(repr=False)

    def token(
        self,
        identity: str,
        room: str,
        *,
        name: Optional[str] = None,
        ttl: Optional[datetime.timedelta] = None,
        api_key: Optional[str] = None,
        api_secret: Optional[str] = None,
        **grants: Any,
    ) -> str:
        """A participant token minted by the official `livekit-api` package."""
        tok = api.AccessToken(api_key or self.api_key, api_secret or self.api_secret)
        tok.with_identity(identity)
        if name is not None:
            tok.with_name(name)
        if ttl is not None:
            tok.with_ttl(ttl)
        tok.with_grants(api.VideoGrants(room_join=True, room=room, **grants))
        return tok.to_jwt()

    def api(self, *, api_secret: Optional[str] = None) -> api.LiveKitAPI:
        """A RoomService client; call inside the event loop, close with aclose()."""
        return api.LiveKitAPI(
            self.http_url,
            self.api_key,
            api_secret or self.api_secret,
            failover=False,
        )


def unique_room(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def room_options() -> rtc.RoomOptions:
    return rtc.RoomOptions(auto_subscribe=True, connect_timeout=10.0)


class Recorder:
    """Records a room's events so a test can wait, bounded, for one to match."""

    EVENTS = (
        "participant_connected",
        "participant_disconnected",
        "track_published",
        "track_unpublished",
        "track_subscribed",
        "track_unsubscribed",
        "track_subscription_failed",
        "track_muted",
        "track_unmuted",
        "participant_metadata_changed",
        "participant_name_changed",
        "data_received",
        "disconnected",
        "connection_state_changed",
    )

    def __init__(self, room: rtc.Room, label: str) -> None:
        self.label = label
        self.events: list[tuple[str, tuple[Any, ...]]] = []
        self._changed = asyncio.Event()
        for name in self.EVENTS:
            room.on(name, self._handler(name))

    def _handler(self, name: str) -> Callable[..., None]:
        def handle(*args: Any) -> None:
            self.events.append((name, args))
            self._changed.set()

        return handle

    def matching(self, name: str, pred: Callable[..., bool] = lambda *a: True) -> list[tuple]:
        return [args for (n, args) in self.events if n == name and pred(*args)]

    def summary(self) -> str:
        names = [n for (n, _) in self.events]
        return ", ".join(names[-40:]) or "(no events)"

    async def wait_for(
        self,
        name: str,
        pred: Callable[..., bool] = lambda *a: True,
        *,
        what: str,
        timeout: float = EVENT_TIMEOUT_S,
    ) -> tuple:
        """Waits for an event `name` whose arguments satisfy `pred`."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.matching(name, pred)
            if found:
                return found[0]
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"[{self.label}] timed out after {timeout:.0f} s waiting for {what} "
                    f"(event '{name}'); events seen: {self.summary()}"
                )
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(left, 0.5))
            except asyncio.TimeoutError:
                pass

    async def expect_none(
        self, name: str, pred: Callable[..., bool], *, what: str, duration: float
    ) -> None:
        """Asserts that no matching event arrives within `duration` seconds."""
        await asyncio.sleep(duration)
        found = self.matching(name, pred)
        assert not found, f"[{self.label}] unexpected {what}: {found!r}"


async def wait_until(
    pred: Callable[[], bool], *, what: str, timeout: float = EVENT_TIMEOUT_S
) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.1)


async def connect(server: Server, token: str, label: str) -> tuple[rtc.Room, Recorder]:
    """Connects a new room client; the recorder is attached before connecting."""
    room = rtc.Room()
    rec = Recorder(room, label)
    try:
        await asyncio.wait_for(
            room.connect(server.ws_url, token, room_options()), CONNECT_TIMEOUT_S
        )
    except asyncio.TimeoutError as e:
        raise AssertionError(
            f"[{label}] connect to {server.ws_url} did not finish within {CONNECT_TIMEOUT_S:.0f} s"
        ) from e
    except rtc.ConnectError as e:
        raise AssertionError(f"[{label}] connect to {server.ws_url} failed: {e.message}") from e
    return room, rec


async def expect_connect_refused(server: Server, token: str, label: str) -> str:
    """Connects with a token the server must refuse; returns the error text."""
    room = rtc.Room()
    try:
        await asyncio.wait_for(
            room.connect(server.ws_url, token, room_options()), CONNECT_TIMEOUT_S
        )
    except rtc.ConnectError as e:
        return e.message
    except asyncio.TimeoutError as e:
        raise AssertionError(
            f"[{label}] connect neither succeeded nor failed within {CONNECT_TIMEOUT_S:.0f} s; "
            "the server must refuse the token"
        ) from e
    await safe_disconnect(room)
    raise AssertionError(f"[{label}] the server accepted a token it must refuse")


async def safe_disconnect(room: Optional[rtc.Room]) -> None:
    if room is None:
        return
    try:
        await asyncio.wait_for(room.disconnect(), DISCONNECT_TIMEOUT_S)
    except Exception:  # noqa: BLE001 - best-effort cleanup
        pass


class SineSource:
    """A 48 kHz mono audio source fed with a 440 Hz sine in 10 ms frames."""

    def __init__(self, freq: float = 440.0, amplitude: float = 0.3) -> None:
        self.source = rtc.AudioSource(AUDIO_RATE, 1)
        self._freq = freq
        self._amp = amplitude
        self._phase = 0
        self._task: Optional[asyncio.Task] = None

    def _frame(self) -> rtc.AudioFrame:
        n = AUDIO_RATE * AUDIO_FRAME_MS // 1000
        samples = array(
            "h",
            (
                int(self._amp * 32767 * math.sin(2 * math.pi * self._freq * (self._phase + i) / AUDIO_RATE))
                for i in range(n)
            ),
        )
        self._phase = (self._phase + n) % AUDIO_RATE
        return rtc.AudioFrame(samples.tobytes(), AUDIO_RATE, 1, n)

    async def _run(self) -> None:
        period = AUDIO_FRAME_MS / 1000
        next_at = time.monotonic()
        while True:
            await self.source.capture_frame(self._frame())
            next_at += period
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        await self.source.aclose()


class PatternSource:
    """A 320x240 RGBA video source whose colour changes every frame, 15 fps."""

    def __init__(self) -> None:
        self.source = rtc.VideoSource(VIDEO_WIDTH, VIDEO_HEIGHT)
        self._task: Optional[asyncio.Task] = None

    async def _run(self) -> None:
        n = 0
        period = 1 / VIDEO_FPS
        next_at = time.monotonic()
        while True:
            shade = (n * 8) % 256
            pixel = bytes((shade, 255 - shade, 128, 255))
            frame = rtc.VideoFrame(
                VIDEO_WIDTH,
                VIDEO_HEIGHT,
                rtc.VideoBufferType.RGBA,
                bytearray(pixel * (VIDEO_WIDTH * VIDEO_HEIGHT)),
            )
            self.source.capture_frame(frame, timestamp_us=int(n * period * 1_000_000))
            n += 1
            next_at += period
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        await self.source.aclose()


async def publish_audio(
    room: rtc.Room, sine: SineSource, name: str = "sine"
) -> tuple[rtc.LocalAudioTrack, rtc.LocalTrackPublication]:
    track = rtc.LocalAudioTrack.create_audio_track(name, sine.source)
    opts = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
    pub = await asyncio.wait_for(room.local_participant.publish_track(track, opts), EVENT_TIMEOUT_S)
    return track, pub


async def publish_video(
    room: rtc.Room, pattern: PatternSource, name: str = "pattern"
) -> tuple[rtc.LocalVideoTrack, rtc.LocalTrackPublication]:
    track = rtc.LocalVideoTrack.create_video_track(name, pattern.source)
    opts = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_CAMERA)
    pub = await asyncio.wait_for(room.local_participant.publish_track(track, opts), EVENT_TIMEOUT_S)
    return track, pub


async def count_audio_frames(track: rtc.Track, want: int) -> tuple[int, int]:
    """Reads frames until `want` arrived; returns (frames, loudest sample)."""
    stream = rtc.AudioStream(track, sample_rate=AUDIO_RATE, num_channels=1)
    frames = 0
    loudest = 0
    try:

        async def read() -> None:
            nonlocal frames, loudest
            async for ev in stream:
                frames += 1
                samples = ev.frame.data
                if len(samples):
                    loudest = max(loudest, max(abs(s) for s in samples))
                if frames >= want:
                    return

        await asyncio.wait_for(read(), MEDIA_TIMEOUT_S)
    except asyncio.TimeoutError:
        pass
    finally:
        await stream.aclose()
    return frames, loudest


async def count_video_frames(track: rtc.Track, want: int) -> tuple[int, tuple[int, int]]:
    """Reads frames until `want` arrived; returns (frames, last frame size)."""
    stream = rtc.VideoStream(track)
    frames = 0
    size = (0, 0)
    try:

        async def read() -> None:
            nonlocal frames, size
            async for ev in stream:
                frames += 1
                size = (ev.frame.width, ev.frame.height)
                if frames >= want:
                    return

        await asyncio.wait_for(read(), MEDIA_TIMEOUT_S)
    except asyncio.TimeoutError:
        pass
    finally:
        await stream.aclose()
    return frames, size
