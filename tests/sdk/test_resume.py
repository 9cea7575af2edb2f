"""A participant whose signalling connection drops resumes its session."""

from __future__ import annotations

import asyncio

from livekit import rtc

from sdk_helpers import (
    EVENT_TIMEOUT_S,
    SineSource,
    connect,
    count_audio_frames,
    publish_audio,
    safe_disconnect,
    unique_room,
    wait_until,
)

from livekit.rtc._proto.room_pb2 import SimulateScenarioKind


def test_signal_reconnect_resumes_the_session(server, run):
    run(_resume(server))


async def _resume(server) -> None:
    room_name = unique_room("resume")
    alice_room = bob_room = None
    sine = SineSource()
    try:
        bob_room, bob = await connect(server, server.token("bob", room_name), "bob")
        alice_room, _alice = await connect(server, server.token("alice", room_name), "alice")
        sine.start()
        _, pub = await publish_audio(alice_room, sine)
        track, _, _ = await bob.wait_for(
            "track_subscribed",
            lambda t, p, who: who.identity == "alice" and p.sid == pub.sid,
            what="bob to receive alice's audio",
        )
        # The server rates every connection; on loopback it is excellent.
        await wait_until(
            lambda: bob_room.remote_participants["alice"].connection_quality
            == rtc.ConnectionQuality.QUALITY_EXCELLENT,
            what="bob to learn alice's connection quality from the server",
        )
        sid_before = alice_room.local_participant.sid
        gone: list[str] = []
        bob_room.on("participant_disconnected", lambda p: gone.append(p.identity))
        resumed = asyncio.Event()
        alice_room.on("reconnected", lambda *a: resumed.set())

        await asyncio.wait_for(
            alice_room.simulate_scenario(SimulateScenarioKind.SIMULATE_SIGNAL_RECONNECT), EVENT_TIMEOUT_S
        )
        try:
            await asyncio.wait_for(resumed.wait(), EVENT_TIMEOUT_S)
        except asyncio.TimeoutError as e:
            raise AssertionError("alice's session did not resume") from e

        assert alice_room.local_participant.sid == sid_before, "the session was replaced, not resumed"
        assert alice_room.connection_state == rtc.ConnectionState.CONN_CONNECTED
        frames, loudest = await count_audio_frames(track, 50)
        assert frames >= 50 and loudest > 1000, f"audio after the resume: {frames} frames, peak {loudest}"
        assert "alice" not in gone, "bob saw alice leave during a resume"
        assert "alice" in bob_room.remote_participants
    finally:
        await sine.stop()
        await safe_disconnect(alice_room)
        await safe_disconnect(bob_room)
