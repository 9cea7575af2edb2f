"""Two participants using the official Python SDK: media, data, mute, leave."""

from __future__ import annotations

import asyncio

from livekit import rtc

from sdk_helpers import (
    EVENT_TIMEOUT_S,
    PatternSource,
    SineSource,
    connect,
    count_audio_frames,
    count_video_frames,
    publish_audio,
    publish_video,
    safe_disconnect,
    unique_room,
)

WANT_AUDIO_FRAMES = 50  # half a second of 10 ms frames
WANT_VIDEO_FRAMES = 10


def test_two_participants_media_data_mute_leave(server, run):
    run(_two_participants(server))


async def _two_participants(server) -> None:
    room_name = unique_room("media")
    alice_room = bob_room = None
    sine = SineSource()
    pattern = PatternSource()
    try:
        # Bob joins first so that he sees Alice arrive.
        bob_room, bob = await connect(server, server.token("bob", room_name, name="Bob"), "bob")
        assert bob_room.name == room_name, f"bob joined {bob_room.name!r}, expected {room_name!r}"
        alice_room, _alice = await connect(
            server, server.token("alice", room_name, name="Alice"), "alice"
        )
        await bob.wait_for(
            "participant_connected",
            lambda p: p.identity == "alice",
            what="alice to appear in bob's room",
        )
        alice_remote = bob_room.remote_participants.get("alice")
        assert alice_remote is not None, "alice is missing from bob's remote participants"
        assert alice_remote.name == "Alice", f"alice's name is {alice_remote.name!r}"

        # Alice publishes a microphone (sine) and a camera (pattern) track.
        sine.start()
        pattern.start()
        audio_track, audio_pub = await publish_audio(alice_room, sine)
        _video_track, video_pub = await publish_video(alice_room, pattern)
        print(f"alice published audio {audio_pub.sid} and video {video_pub.sid}")

        _, audio_sub, _ = await bob.wait_for(
            "track_subscribed",
            lambda t, pub, p: p.identity == "alice" and pub.sid == audio_pub.sid,
            what="bob to subscribe to alice's audio track",
        )
        video_sub_track, video_sub, _ = await bob.wait_for(
            "track_subscribed",
            lambda t, pub, p: p.identity == "alice" and pub.sid == video_pub.sid,
            what="bob to subscribe to alice's video track",
        )
        audio_sub_track = audio_sub.track
        assert audio_sub_track is not None and audio_sub_track.kind == rtc.TrackKind.KIND_AUDIO
        assert video_sub_track.kind == rtc.TrackKind.KIND_VIDEO
        assert audio_sub.source == rtc.TrackSource.SOURCE_MICROPHONE, (
            f"audio source is {audio_sub.source}"
        )
        assert video_sub.source == rtc.TrackSource.SOURCE_CAMERA, (
            f"video source is {video_sub.source}"
        )

        (audio_frames, loudest), (video_frames, size) = await asyncio.gather(
            count_audio_frames(audio_sub_track, WANT_AUDIO_FRAMES),
            count_video_frames(video_sub_track, WANT_VIDEO_FRAMES),
        )
        print(
            f"bob received {audio_frames} audio frames (loudest sample {loudest}) "
            f"and {video_frames} video frames (last {size[0]}x{size[1]})"
        )
        assert audio_frames >= WANT_AUDIO_FRAMES, (
            f"bob received only {audio_frames} audio frames from alice"
        )
        assert loudest > 500, f"bob's audio from alice is silent (loudest sample {loudest})"
        assert video_frames >= WANT_VIDEO_FRAMES, (
            f"bob received only {video_frames} video frames from alice"
        )
        assert size[0] > 0 and size[1] > 0, f"bob's video frames have size {size}"

        # Data: reliable once, lossy repeated until it arrives (it may drop).
        await alice_room.local_participant.publish_data(
            b"reliable-hello", reliable=True, topic="t-reliable"
        )
        (pkt,) = await bob.wait_for(
            "data_received",
            lambda pkt: pkt.data == b"reliable-hello",
            what="alice's reliable data packet",
        )
        assert pkt.participant is not None and pkt.participant.identity == "alice", (
            f"reliable packet sender is {pkt.participant!r}"
        )
        assert pkt.kind == rtc.DataPacketKind.KIND_RELIABLE, f"reliable packet kind {pkt.kind}"
        assert pkt.topic == "t-reliable", f"reliable packet topic {pkt.topic!r}"

        async def send_lossy() -> None:
            while True:
                await alice_room.local_participant.publish_data(
                    b"lossy-hello", reliable=False, topic="t-lossy"
                )
                await asyncio.sleep(0.25)

        sender = asyncio.ensure_future(send_lossy())
        try:
            (pkt,) = await bob.wait_for(
                "data_received",
                lambda pkt: pkt.data == b"lossy-hello",
                what="alice's lossy data packet",
            )
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
        assert pkt.participant is not None and pkt.participant.identity == "alice", (
            f"lossy packet sender is {pkt.participant!r}"
        )
        assert pkt.kind == rtc.DataPacketKind.KIND_LOSSY, f"lossy packet kind {pkt.kind}"
        assert pkt.topic == "t-lossy", f"lossy packet topic {pkt.topic!r}"

        # Alice mutes her microphone; Bob is told.
        audio_track.mute()
        _, muted_pub = await bob.wait_for(
            "track_muted",
            lambda p, pub: p.identity == "alice" and pub.sid == audio_pub.sid,
            what="bob to see alice's audio track muted",
        )
        assert muted_pub.muted, "alice's audio publication is not marked muted at bob"

        # Alice leaves; Bob is told.
        await asyncio.wait_for(alice_room.disconnect(), EVENT_TIMEOUT_S)
        alice_room = None
        await bob.wait_for(
            "participant_disconnected",
            lambda p: p.identity == "alice",
            what="bob to see alice leave",
        )
        assert "alice" not in bob_room.remote_participants, "alice is still listed at bob"
    finally:
        await sine.stop()
        await pattern.stop()
        await safe_disconnect(alice_room)
        await safe_disconnect(bob_room)
