"""Codecs other than VP8, and end-to-end encrypted media through the SFU."""

from __future__ import annotations

import asyncio
import os

from livekit import rtc

from sdk_helpers import (
    EVENT_TIMEOUT_S,
    PatternSource,
    SineSource,
    connect,
    count_audio_frames,
    count_video_frames,
    room_options,
    safe_disconnect,
    unique_room,
)

WANT_VIDEO_FRAMES = 10
WANT_AUDIO_FRAMES = 50


def test_h264_is_forwarded(server, run):
    run(_codec(server, rtc.VideoCodec.H264, "h264"))


def test_vp9_is_forwarded(server, run):
    run(_codec(server, rtc.VideoCodec.VP9, "vp9"))


async def _codec(server, codec: int, label: str) -> None:
    room_name = unique_room(label)
    alice_room = bob_room = None
    pattern = PatternSource()
    try:
        bob_room, bob = await connect(server, server.token("bob", room_name), "bob")
        alice_room, _ = await connect(server, server.token("alice", room_name), "alice")
        pattern.start()
        track = rtc.LocalVideoTrack.create_video_track(label, pattern.source)
        opts = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_CAMERA, video_codec=codec)
        pub = await asyncio.wait_for(alice_room.local_participant.publish_track(track, opts), EVENT_TIMEOUT_S)
        sub_track, _, _ = await bob.wait_for(
            "track_subscribed",
            lambda t, p, who: who.identity == "alice" and p.sid == pub.sid,
            what=f"bob to subscribe to alice's {label} track",
        )
        frames, size = await count_video_frames(sub_track, WANT_VIDEO_FRAMES)
        assert frames >= WANT_VIDEO_FRAMES, f"bob decoded only {frames} {label} frames"
        assert size[0] > 0 and size[1] > 0, f"decoded {label} frames have size {size}"
    finally:
        await pattern.stop()
        await safe_disconnect(alice_room)
        await safe_disconnect(bob_room)


def _e2ee_options(key: bytes) -> rtc.RoomOptions:
    opts = room_options()
    opts.encryption = rtc.E2EEOptions(key_provider_options=rtc.KeyProviderOptions(shared_key=key))
    return opts


def test_end_to_end_encrypted_media_passes_through(server, run):
    run(_e2ee(server))


async def _e2ee(server) -> None:
    room_name = unique_room("e2ee")
    key = os.urandom(32)
    sine = SineSource()
    pattern = PatternSource()
    alice_room = bob_room = None
    try:
        bob_room = rtc.Room()
        bob_events: list = []
        bob_room.on("track_subscribed", lambda t, p, who: bob_events.append((t, p, who)))
        await asyncio.wait_for(
            bob_room.connect(server.ws_url, server.token("bob", room_name), _e2ee_options(key)), 20
        )
        alice_room = rtc.Room()
        await asyncio.wait_for(
            alice_room.connect(server.ws_url, server.token("alice", room_name), _e2ee_options(key)), 20
        )
        sine.start()
        pattern.start()
        audio = rtc.LocalAudioTrack.create_audio_track("sine", sine.source)
        video = rtc.LocalVideoTrack.create_video_track("pattern", pattern.source)
        lp = alice_room.local_participant
        a_pub = await asyncio.wait_for(
            lp.publish_track(audio, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)),
            EVENT_TIMEOUT_S,
        )
        v_pub = await asyncio.wait_for(
            lp.publish_track(video, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_CAMERA)),
            EVENT_TIMEOUT_S,
        )
        deadline = asyncio.get_running_loop().time() + EVENT_TIMEOUT_S
        while len({p.sid for _, p, _ in bob_events} & {a_pub.sid, v_pub.sid}) < 2:
            assert asyncio.get_running_loop().time() < deadline, "bob did not subscribe to both tracks"
            await asyncio.sleep(0.1)
        tracks = {p.sid: t for t, p, _ in bob_events}
        encrypted = [p.encryption_type for _, p, _ in bob_events]
        assert all(e != rtc.EncryptionType.NONE for e in encrypted), (
            f"the publications are not marked encrypted: {encrypted}"
        )
        (audio_frames, loudest), (video_frames, size) = await asyncio.gather(
            count_audio_frames(tracks[a_pub.sid], WANT_AUDIO_FRAMES),
            count_video_frames(tracks[v_pub.sid], WANT_VIDEO_FRAMES),
        )
        assert audio_frames >= WANT_AUDIO_FRAMES, f"only {audio_frames} decrypted audio frames"
        assert loudest > 1000, f"decrypted audio is silent (peak {loudest}): decryption failed"
        assert video_frames >= WANT_VIDEO_FRAMES and size[0] > 0, (
            f"only {video_frames} decrypted video frames of size {size}"
        )
    finally:
        await sine.stop()
        await pattern.stop()
        await safe_disconnect(alice_room)
        await safe_disconnect(bob_room)
