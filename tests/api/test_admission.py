"""The join rules (``Admission``) on a real SQLite file: every refusal code, capacity under
concurrency, take-over, the lobby, endpoints and brute force."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from signaling.admission import Admission, Admitted, Credentials, Waiting
from signaling.auth import (
    JoinRefused,
    Passwords,
    create_join_token,
    hash_secret_token,
    new_secret_token,
    verify_join_token,
)
from signaling.store import Account, Room, SqliteStore
from tests.pgproc import open_store_for

ICT = dt.timezone(dt.timedelta(hours=7))
MONDAY_9 = dt.datetime(2025, 1, 13, 9, 0, tzinfo=ICT).timestamp()
SECRET = b"s" * 32


@dataclass
class World:
    store: SqliteStore
    admission: Admission
    passwords: Passwords
    room: Room
    host: Account
    member: Account
    outsider: Account
    clock: list[float]

    def token(self, identity: str, role: str = "member", room: str = "Hop",
              ttl_s: float = 600) -> str:
        return create_join_token(SECRET, room, identity, identity, role,  # type: ignore[arg-type]
                                 ttl_s=ttl_s, now=self.clock[0],
                                 room_instance=self.room.instance)

    async def admit(self, credentials: Credentials, session: str = "s1", room: str = "Hop",
                    address: str = "10.0.0.1") -> Admitted | Waiting:
        return await self.admission.admit(room, credentials, address, session)

    async def refused(self, credentials: Credentials, session: str = "s1", room: str = "Hop",
                      address: str = "10.0.0.1") -> JoinRefused:
        with pytest.raises(JoinRefused) as caught:
            await self.admit(credentials, session, room, address)
        return caught.value


@pytest.fixture
async def world(tmp_path: Path, store_url: str | None) -> AsyncIterator[World]:
    store = await open_store_for(tmp_path, store_url)
    passwords = Passwords.fast()
    clock = [MONDAY_9]
    org = await store.create_organisation("UBND")
    other = await store.create_organisation("Khác")
    room = await store.create_room("Hop", org.id, password_hash=await passwords.hash("MatKhau"))
    host = await store.create_account("host", "Chủ tọa", "host", org.id,
                                      await passwords.hash("host-pass"))
    member = await store.create_account("lan", "Lan", "member", org.id,
                                        await passwords.hash("lan-pass"))
    outsider = await store.create_account("binh", "Bình", "member", other.id,
                                          await passwords.hash("binh-pass"))
    await store.add_member(room.id, member.id)
    admission = Admission(store, SECRET, passwords, clock=lambda: clock[0])
    yield World(store, admission, passwords, room, host, member, outsider, clock)
    await admission.close()
    await store.close()


def lan(**overrides: object) -> Credentials:
    fields: dict[str, object] = dict(username="lan", password="lan-pass", room_password="MatKhau")
    fields.update(overrides)
    return Credentials(**fields)  # type: ignore[arg-type]


async def test_account_with_room_password(world: World) -> None:
    admitted = await world.admit(lan(name="Chị Lan"))
    assert isinstance(admitted, Admitted)
    assert (admitted.identity, admitted.role, admitted.name) == (
        f"account:{world.member.id}", "member", "Chị Lan")
    assert world.admission.count("Hop") == 1


async def test_bad_password_codes(world: World) -> None:
    assert (await world.refused(lan(room_password="matkhau"))).code == "bad-password"
    assert (await world.refused(lan(room_password=None))).code == "bad-password"
    refused = await world.refused(lan(password="LAN-PASS"))
    assert refused.code == "bad-password" and refused.to_json()["ref"] == "join"
    assert (await world.refused(Credentials(username="nobody", password="x"))).code \
        == "bad-password"
    assert world.admission.count("Hop") == 0


async def test_not_invited_and_no_such_room(world: World) -> None:
    outsider = Credentials(username="binh", password="binh-pass", room_password="MatKhau")
    assert (await world.refused(outsider)).code == "not-invited"
    assert (await world.refused(Credentials(name="x"))).code == "not-invited"
    refused = await world.refused(lan(), room="hop")
    assert refused.code == "no-such-room" and "case-sensitive" in refused.message


async def test_host_needs_no_room_password(world: World) -> None:
    admitted = await world.admit(Credentials(username="host", password="host-pass"))
    assert isinstance(admitted, Admitted) and admitted.role == "host"


async def test_token_join_and_token_codes(world: World) -> None:
    admitted = await world.admit(Credentials(token=world.token("rec", "recorder")))
    assert isinstance(admitted, Admitted) and not admitted.can_publish
    assert world.admission.count("Hop") == 0  # the recorder takes no seat
    expired = world.token("late", ttl_s=60)
    world.clock[0] += 61
    assert (await world.refused(Credentials(token=expired))).code == "token-expired"
    assert (await world.refused(Credentials(token=world.token("x", room="Other")))).code \
        == "bad-token"
    tampered = world.token("x")[:-3] + "abc"
    assert (await world.refused(Credentials(token=tampered))).code == "bad-token"


async def test_relay_token_publishes_and_takes_no_seat(world: World) -> None:
    # issue 14: a relay from another server carries that server's people, who hold seats there.
    admitted = await world.admit(Credentials(token=world.token("relay-huyen", "relay")))
    assert isinstance(admitted, Admitted) and admitted.role == "relay" and admitted.can_publish
    assert world.admission.count("Hop") == 0


async def test_room_locked(world: World) -> None:
    await world.store.update_room("Hop", locked=True)
    refused = await world.refused(lan())
    assert refused.code == "room-locked" and "'Hop'" in refused.message
    host = await world.admit(Credentials(token=world.token("chair", "host")))
    assert isinstance(host, Admitted)


async def test_already_in_room_and_take_over(world: World) -> None:
    first = await world.admit(lan(), session="old")
    assert isinstance(first, Admitted)
    refused = await world.refused(lan(), session="new")
    assert refused.code == "already-in-room" and refused.to_json()["room"] == "Hop"
    # An account sits in one room at a time: another room refuses it too.
    await world.store.create_room("Khac", world.room.org_id)
    await world.store.add_member((await world.store.get_room("Khac")).id, world.member.id)
    assert (await world.refused(lan(room_password=None), room="Khac")).code == "already-in-room"

    moved = await world.admit(lan(take_over=True), session="new")
    assert isinstance(moved, Admitted) and moved.replaced_session == "old"
    assert world.admission.occupants("Hop") == {f"account:{world.member.id}": "new"}
    assert not world.admission.release("Hop", moved.identity, "old")  # the old one leaving late
    assert world.admission.count("Hop") == 1
    assert world.admission.release("Hop", moved.identity, "new")
    assert world.admission.count("Hop") == 0


async def test_invitation_join_and_codes(world: World) -> None:
    token, token_hash = new_secret_token()
    await world.store.create_invitation(world.room.id, token_hash, max_uses=1,
                                        expires_at=world.clock[0] + 3600, label="Khách")
    admitted = await world.admit(Credentials(invite=token, name="Ông Nam"))
    assert isinstance(admitted, Admitted) and admitted.role == "guest"
    assert admitted.name == "Ông Nam" and admitted.rejoin_token
    grants = verify_join_token(SECRET, admitted.rejoin_token, world.clock[0], "Hop")
    assert grants.identity == admitted.identity
    refused = await world.refused(Credentials(invite=token), session="s2")
    assert refused.code == "not-invited" and "used" in refused.message
    assert (await world.refused(Credentials(invite="made-up"))).code == "not-invited"

    late, late_hash = new_secret_token()
    await world.store.create_invitation(world.room.id, late_hash, max_uses=5,
                                        expires_at=world.clock[0] + 10)
    world.clock[0] += 10
    assert (await world.refused(Credentials(invite=late))).code == "token-expired"
    assert hash_secret_token(late) == late_hash


async def test_lobby(world: World) -> None:
    await world.store.update_room("Hop", lobby=True)
    token, token_hash = new_secret_token()
    await world.store.create_invitation(world.room.id, token_hash, max_uses=5,
                                        expires_at=world.clock[0] + 3600)
    waiting = await world.admit(Credentials(invite=token, name="Khách 1"), session="g1")
    assert isinstance(waiting, Waiting) and world.admission.count("Hop") == 0
    await world.admit(Credentials(invite=token, name="Khách 2"), session="g2")
    assert [w.session_id for w in world.admission.lobby("Hop")] == ["g1", "g2"]
    member = await world.admit(lan(), session="m")  # members skip the lobby
    assert isinstance(member, Admitted)
    admitted = world.admission.admit_waiting("Hop", "g1")
    assert admitted.role == "guest" and world.admission.count("Hop") == 2
    world.admission.deny_waiting("Hop", "g2")
    assert world.admission.lobby("Hop") == []
    with pytest.raises(KeyError):
        world.admission.admit_waiting("Hop", "g2")


async def test_capacity_50_concurrent_joins_into_26(world: World) -> None:
    assert world.room.capacity == 26
    token, token_hash = new_secret_token()
    await world.store.create_invitation(world.room.id, token_hash, max_uses=100,
                                        expires_at=world.clock[0] + 3600)

    async def join(i: int) -> str:
        # Half by token, half by invitation link (which awaits the store mid-admission).
        credentials = Credentials(token=world.token(f"p{i}")) if i % 2 else \
            Credentials(invite=token, name=f"Khách {i}")
        try:
            await world.admit(credentials, session=f"s{i}", address=f"10.0.0.{i}")
            return "admitted"
        except JoinRefused as refused:
            assert refused.code == "room-full", refused.message
            assert "26" in refused.message and refused.to_json()["limit"] == 26
            return "room-full"

    results = await asyncio.gather(*(join(i) for i in range(50)))
    assert results.count("admitted") == 26 and results.count("room-full") == 24
    assert world.admission.count("Hop") == 26
    # Someone leaves: exactly one more fits.
    identity, session = next(iter(world.admission.occupants("Hop").items()))
    assert world.admission.release("Hop", identity, session)
    await world.admit(Credentials(token=world.token("late")), session="late")
    assert (await world.refused(Credentials(token=world.token("later")), "x")).code == "room-full"


async def test_open_rooms(world: World) -> None:
    world.admission.open_rooms = True
    world.admission.open_room_capacity = 2
    a = await world.admit(Credentials(name="Lan"), room="anything", session="a")
    b = await world.admit(Credentials(name="Lan"), room="anything", session="b")
    assert isinstance(a, Admitted) and isinstance(b, Admitted) and a.identity != b.identity
    refused = await world.refused(Credentials(name="c"), room="anything", session="c")
    assert refused.code == "room-full" and "2" in refused.message
    # Stored rooms keep their rules, credentials or not.
    await world.store.update_room("Hop", locked=True)
    assert (await world.refused(Credentials(name="x"))).code == "room-locked"


async def test_endpoint_joins_its_scheduled_meetings(world: World) -> None:
    secret, secret_hash = new_secret_token()
    device = await world.store.create_endpoint("Phòng họp 1", world.room.org_id, secret_hash)
    await world.store.create_meeting(world.room.id, "Giao ban", "2025-01-06", "08:30", "10:00",
                                     endpoint_ids=(device.id,))
    credentials = Credentials(endpoint_id=device.id, endpoint_secret=secret)
    admitted = await world.admit(credentials)
    assert isinstance(admitted, Admitted) and admitted.role == "endpoint"
    assert admitted.name == "Phòng họp 1"
    world.admission.release("Hop", admitted.identity, "s1")
    world.clock[0] += 2 * 3600  # 11:00: the meeting is over
    refused = await world.refused(credentials)
    assert refused.code == "not-invited" and "next starts 2025-01-20" in refused.message
    bad = Credentials(endpoint_id=device.id, endpoint_secret=secret.upper())
    assert (await world.refused(bad)).code == "bad-password"


async def test_sixth_bad_password_in_a_minute_is_rate_limited(world: World) -> None:
    # Failures count per account AND address (security issue 8: keyed by the account alone,
    # anyone could lock anyone out). Before, the five failures came from five addresses.
    for _ in range(5):
        refused = await world.refused(lan(password="guess"), address="10.1.0.1")
        assert refused.code == "bad-password"
        world.clock[0] += 10  # five failures spread over 50 s
    refused = await world.refused(lan(password="guess"), address="10.1.0.1")
    assert refused.code == "rate-limited" and refused.to_json()["retry_after"] > 0
    refused = await world.refused(lan(), address="10.1.0.1")  # the right one: still too soon
    assert refused.code == "rate-limited"
    # The owner, from their own address, is not locked out by the guesser.
    assert isinstance(await world.admit(lan(), address="10.1.0.9"), Admitted)
    world.admission.release("Hop", f"account:{world.member.id}", "s1")
    world.clock[0] += 10  # a minute after the first failure: one more attempt
    assert isinstance(await world.admit(lan(), address="10.1.0.1"), Admitted)


async def test_bad_passwords_from_one_address_are_rate_limited(world: World) -> None:
    for i in range(20):  # different accounts, one address
        await world.refused(Credentials(username=f"user{i}", password="x"), address="10.9.9.9")
    assert (await world.refused(lan(), address="10.9.9.9")).code == "rate-limited"
    assert isinstance(await world.admit(lan(), address="10.9.9.10"), Admitted)


async def test_joins_are_audited(world: World) -> None:
    await world.admit(lan())
    await world.refused(lan(password="bad"), session="s2")
    await world.admission.close()
    outcomes = [(j.identity, j.outcome) for j in await world.store.list_joins("Hop")]
    assert outcomes == [("account:lan", "bad-password"),
                        (f"account:{world.member.id}", "admitted")]
