"""Access tokens minted by the official `livekit-api` package: room scoping,
expiry, wrong secret or key, and the canPublish grant."""

from __future__ import annotations

import asyncio
import datetime
import secrets

from livekit import api

from sdk_helpers import (
    EVENT_TIMEOUT_S,
    SineSource,
    connect,
    expect_connect_refused,
    publish_audio,
    safe_disconnect,
    unique_room,
)

# How long to watch for something that must not happen.
QUIET_PERIOD_S = 3.0
# publish_track may only fail after the SDK's own timeout for the server's answer.
PUBLISH_REFUSAL_TIMEOUT_S = 45.0


def test_token_is_scoped_to_its_room(server, run):
    run(_room_scoping(server))


async def _room_scoping(server) -> None:
    room_a = unique_room("scope-a")
    room_b = unique_room("scope-b")
    carol_room = eve_room = dave_room = None
    try:
        carol_room, _ = await connect(server, server.token("carol", room_a), "carol@a")
        eve_room, eve = await connect(server, server.token("eve", room_a), "eve@a")
        dave_room, dave = await connect(server, server.token("dave", room_b), "dave@b")
        assert carol_room.name == room_a, f"carol's token is for {room_a!r}, joined {carol_room.name!r}"
        assert eve_room.name == room_a, f"eve joined {eve_room.name!r}, expected {room_a!r}"
        assert dave_room.name == room_b, f"dave joined {dave_room.name!r}, expected {room_b!r}"

        # Positive control: someone in room a sees carol.
        if "carol" not in eve_room.remote_participants:
            await eve.wait_for(
                "participant_connected",
                lambda p: p.identity == "carol",
                what="eve (room a) to see carol (room a)",
            )
        # Nobody in room b ever sees carol or eve, nor they dave.
        await dave.expect_none(
            "participant_connected",
            lambda p: p.identity in ("carol", "eve"),
            what="participant from room a visible in room b",
            duration=QUIET_PERIOD_S,
        )
        assert set(dave_room.remote_participants) == set(), (
            f"dave (room b) sees {sorted(dave_room.remote_participants)}"
        )
        assert "dave" not in carol_room.remote_participants, "carol (room a) sees dave (room b)"
        assert "dave" not in eve_room.remote_participants, "eve (room a) sees dave (room b)"
    finally:
        for r in (carol_room, eve_room, dave_room):
            await safe_disconnect(r)


async def _refused(server, room: str, bad_token: str, label: str) -> str:
    """Checks that a valid token for `room` connects (so a refusal below is
    about the token, not a broken server), then that `bad_token` is refused."""
    good_room, _ = await connect(server, server.token("control", room), f"{label} control")
    await safe_disconnect(good_room)
    return await expect_connect_refused(server, bad_token, label)


def test_expired_token_is_refused(server, run):
    room = unique_room("expired")
    # Ten minutes past expiry: far beyond any clock leeway.
    token = server.token("late", room, ttl=datetime.timedelta(minutes=-10))
    message = run(_refused(server, room, token, "expired token"))
    print(f"expired token refused: {message}")


def test_token_with_wrong_secret_is_refused(server, run):
    room = unique_room("wrong-secret")
    wrong = secrets.token_urlsafe(36)
    assert wrong != server.api_secret
    token = server.token("forger", room, api_secret=wrong)
    message = run(_refused(server, room, token, "wrong-secret token"))
    print(f"wrong-secret token refused: {message}")


def test_token_with_unknown_key_is_refused(server, run):
    room = unique_room("unknown-key")
    token = server.token("stranger", room, api_key="not-a-known-key")
    message = run(_refused(server, room, token, "unknown-key token"))
    print(f"unknown-key token refused: {message}")


def test_hidden_participant_is_refused(server, run):
    """Nobody listens in unseen: a token with the hidden grant cannot join."""
    room = unique_room("hidden")
    token = server.token("ghost", room, hidden=True)
    message = run(_refused(server, room, token, "hidden token"))
    print(f"hidden token refused: {message}")


def test_unsigned_token_is_refused(server, run):
    """A token with algorithm "none" and no signature."""
    import base64
    import json
    import time

    def b64(obj) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    room = unique_room("unsigned")
    now = int(time.time())
    claims = {"iss": server.api_key, "sub": "mallory", "nbf": now - 10, "exp": now + 600,
              "video": {"roomJoin": True, "room": room}}
    token = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."
    message = run(_refused(server, room, token, "unsigned token"))
    print(f"unsigned token refused: {message}")


def test_can_publish_false_cannot_publish(server, run):
    run(_cannot_publish(server))


async def _cannot_publish(server) -> None:
    room_name = unique_room("no-publish")
    viewer_room = muted_room = None
    sine = SineSource()
    try:
        viewer_room, viewer = await connect(server, server.token("olivia", room_name), "olivia")
        muted_room, _ = await connect(
            server, server.token("mallory", room_name, can_publish=False), "mallory"
        )
        await viewer.wait_for(
            "participant_connected",
            lambda p: p.identity == "mallory",
            what="olivia to see mallory join",
        )
        perms = muted_room.local_participant.permissions
        assert not perms.can_publish, (
            "the server granted can_publish to a token with canPublish=false"
        )

        sine.start()
        outcome = "succeeded"
        try:
            await asyncio.wait_for(publish_audio(muted_room, sine), PUBLISH_REFUSAL_TIMEOUT_S)
        except asyncio.TimeoutError:
            outcome = "hung"
        except Exception as e:  # noqa: BLE001 - any SDK error is the expected refusal
            outcome = f"failed as expected: {type(e).__name__}: {e}"
        print(f"mallory's publish_track {outcome}")
        assert outcome.startswith("failed"), (
            f"publish_track by a participant without canPublish {outcome}; "
            "the server must refuse the track"
        )
        await viewer.expect_none(
            "track_published",
            lambda pub, p: p.identity == "mallory",
            what="track published by mallory, who lacks canPublish",
            duration=QUIET_PERIOD_S,
        )
        mallory = viewer_room.remote_participants.get("mallory")
        assert mallory is not None, "mallory vanished from olivia's room"
        assert not mallory.track_publications, (
            f"olivia lists mallory's tracks: {list(mallory.track_publications)}"
        )
    finally:
        await sine.stop()
        await safe_disconnect(muted_room)
        await safe_disconnect(viewer_room)


def test_api_with_wrong_secret_is_refused(server, run):
    async def scenario() -> None:
        lkapi = server.api(api_secret=secrets.token_urlsafe(36))
        try:
            try:
                await asyncio.wait_for(
                    lkapi.room.list_rooms(api.ListRoomsRequest()), EVENT_TIMEOUT_S
                )
            except api.TwirpError as e:
                print(f"RoomService refused a wrong-secret token: {e.status} {e.code} {e.message}")
                assert e.status in (401, 403), f"expected HTTP 401/403, got {e.status}"
                return
            raise AssertionError("RoomService accepted a token signed with a wrong secret")
        finally:
            await lkapi.aclose()

    run(scenario())
