"""The Twirp RoomService through the official `livekit-api` client."""

from __future__ import annotations

import asyncio
from typing import Awaitable, TypeVar

from livekit import api, rtc

from sdk_helpers import (
    EVENT_TIMEOUT_S,
    SineSource,
    connect,
    publish_audio,
    safe_disconnect,
    unique_room,
    wait_until,
)

T = TypeVar("T")


async def call(what: str, aw: Awaitable[T]) -> T:
    """One RoomService call, bounded, with the server's error in the message."""
    try:
        return await asyncio.wait_for(aw, EVENT_TIMEOUT_S)
    except asyncio.TimeoutError as e:
        raise AssertionError(f"RoomService {what} did not answer within {EVENT_TIMEOUT_S:.0f} s") from e
    except api.TwirpError as e:
        raise AssertionError(
            f"RoomService {what} failed: HTTP {e.status} {e.code}: {e.message}"
        ) from e


def test_room_service(server, run):
    run(_room_service(server))


async def _room_service(server) -> None:
    room_name = unique_room("svc")
    lkapi = server.api()
    pat_room = None
    sine = SineSource()
    try:
        created = await call(
            "CreateRoom",
            lkapi.room.create_room(api.CreateRoomRequest(name=room_name, empty_timeout=300)),
        )
        assert created.name == room_name, f"CreateRoom returned room {created.name!r}"
        assert created.sid, "CreateRoom returned a room without sid"

        listed = await call("ListRooms", lkapi.room.list_rooms(api.ListRoomsRequest()))
        assert room_name in [r.name for r in listed.rooms], (
            f"ListRooms does not list {room_name!r}: {[r.name for r in listed.rooms]}"
        )
        only = await call(
            "ListRooms(names)", lkapi.room.list_rooms(api.ListRoomsRequest(names=[room_name]))
        )
        assert [r.name for r in only.rooms] == [room_name], (
            f"ListRooms(names=[{room_name!r}]) returned {[r.name for r in only.rooms]}"
        )

        pat_room, pat = await connect(server, server.token("pat", room_name, name="Pat"), "pat")

        async def participants() -> list[str]:
            resp = await call(
                "ListParticipants",
                lkapi.room.list_participants(api.ListParticipantsRequest(room=room_name)),
            )
            return [p.identity for p in resp.participants]

        seen: list[str] = []
        for _ in range(int(EVENT_TIMEOUT_S / 0.25)):
            seen = await participants()
            if "pat" in seen:
                break
            await asyncio.sleep(0.25)
        assert "pat" in seen, f"ListParticipants does not list pat: {seen}"

        info = await call(
            "GetParticipant",
            lkapi.room.get_participant(api.RoomParticipantIdentity(room=room_name, identity="pat")),
        )
        assert info.identity == "pat", f"GetParticipant returned {info.identity!r}"
        assert info.name == "Pat", f"GetParticipant name is {info.name!r}"

        # Pat publishes a microphone track, which the service then mutes.
        sine.start()
        _audio_track, audio_pub = await publish_audio(pat_room, sine)

        async def server_knows_track() -> bool:
            p = await call(
                "GetParticipant",
                lkapi.room.get_participant(
                    api.RoomParticipantIdentity(room=room_name, identity="pat")
                ),
            )
            return any(t.sid == audio_pub.sid for t in p.tracks)

        for _ in range(int(EVENT_TIMEOUT_S / 0.25)):
            if await server_knows_track():
                break
            await asyncio.sleep(0.25)
        else:
            raise AssertionError(f"GetParticipant never listed pat's track {audio_pub.sid}")

        muted = await call(
            "MutePublishedTrack(muted=True)",
            lkapi.room.mute_published_track(
                api.MuteRoomTrackRequest(
                    room=room_name, identity="pat", track_sid=audio_pub.sid, muted=True
                )
            ),
        )
        assert muted.track.sid == audio_pub.sid, f"MutePublishedTrack returned {muted.track.sid!r}"
        assert muted.track.muted, "MutePublishedTrack(muted=True) returned an unmuted track"
        await wait_until(
            lambda: audio_pub.muted
            or bool(
                pat.matching("track_muted", lambda p, pub: pub.sid == audio_pub.sid)
            ),
            what="pat's client to learn that the server muted its track",
        )

        # The service never switches someone's microphone or camera back on.
        try:
            await asyncio.wait_for(
                lkapi.room.mute_published_track(
                    api.MuteRoomTrackRequest(
                        room=room_name, identity="pat", track_sid=audio_pub.sid, muted=False
                    )
                ),
                EVENT_TIMEOUT_S,
            )
        except api.TwirpError as e:
            print(f"MutePublishedTrack(muted=False) refused: HTTP {e.status} {e.code}: {e.message}")
        else:
            raise AssertionError(
                "MutePublishedTrack(muted=False) succeeded; the service must refuse to unmute"
            )
        after = await call(
            "GetParticipant",
            lkapi.room.get_participant(api.RoomParticipantIdentity(room=room_name, identity="pat")),
        )
        still = [t for t in after.tracks if t.sid == audio_pub.sid]
        assert still and still[0].muted, "pat's track is no longer muted after a refused unmute"

        # Nobody can be made invisible to the others.
        try:
            await asyncio.wait_for(
                lkapi.room.update_participant(
                    api.UpdateParticipantRequest(
                        room=room_name,
                        identity="pat",
                        permission=api.ParticipantPermission(
                            can_subscribe=True, can_publish=True, can_publish_data=True, hidden=True
                        ),
                    )
                ),
                EVENT_TIMEOUT_S,
            )
        except api.TwirpError as e:
            print(f"UpdateParticipant(hidden=True) refused: HTTP {e.status} {e.code}: {e.message}")
        else:
            raise AssertionError("UpdateParticipant(hidden=True) succeeded; hidden participants must not exist")

        # Name and metadata changes reach the participant.
        updated = await call(
            "UpdateParticipant",
            lkapi.room.update_participant(
                api.UpdateParticipantRequest(
                    room=room_name, identity="pat", metadata='{"seat":7}', name="Pat Renamed"
                )
            ),
        )
        assert updated.metadata == '{"seat":7}', f"UpdateParticipant metadata {updated.metadata!r}"
        assert updated.name == "Pat Renamed", f"UpdateParticipant name {updated.name!r}"
        local = pat_room.local_participant
        await wait_until(
            lambda: local.metadata == '{"seat":7}',
            what=f"pat to see its new metadata (has {local.metadata!r})",
        )
        await wait_until(
            lambda: local.name == "Pat Renamed",
            what=f"pat to see its new name (has {local.name!r})",
        )

        # Server-sent data reaches the participant, with no participant as sender.
        await call(
            "SendData",
            lkapi.room.send_data(
                api.SendDataRequest(
                    room=room_name,
                    data=b"from-the-server",
                    kind=api.DataPacket.Kind.RELIABLE,
                    topic="server",
                )
            ),
        )
        (pkt,) = await pat.wait_for(
            "data_received",
            lambda pkt: pkt.data == b"from-the-server",
            what="data sent through RoomService.SendData",
        )
        assert pkt.participant is None, f"server data attributed to {pkt.participant!r}"
        assert pkt.topic == "server", f"server data topic {pkt.topic!r}"
        assert pkt.kind == rtc.DataPacketKind.KIND_RELIABLE, f"server data kind {pkt.kind}"

        # Removing the participant disconnects it.
        await call(
            "RemoveParticipant",
            lkapi.room.remove_participant(
                api.RoomParticipantIdentity(room=room_name, identity="pat")
            ),
        )
        await pat.wait_for("disconnected", what="pat to be disconnected by RemoveParticipant")
        await wait_until(
            lambda: not pat_room.isconnected(), what="pat's room to report disconnected"
        )
        for _ in range(int(EVENT_TIMEOUT_S / 0.25)):
            seen = await participants()
            if "pat" not in seen:
                break
            await asyncio.sleep(0.25)
        assert "pat" not in seen, f"ListParticipants still lists pat after removal: {seen}"

        await call("DeleteRoom", lkapi.room.delete_room(api.DeleteRoomRequest(room=room_name)))
        listed = await call("ListRooms", lkapi.room.list_rooms(api.ListRoomsRequest()))
        assert room_name not in [r.name for r in listed.rooms], (
            f"ListRooms still lists {room_name!r} after DeleteRoom"
        )
    finally:
        await sine.stop()
        await safe_disconnect(pat_room)
        await lkapi.aclose()
