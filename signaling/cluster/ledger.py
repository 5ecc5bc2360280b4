"""The cluster's shared state in Redis: live nodes, where each room runs, and every seat.

Why Redis scripts: a room's limit must hold exactly across nodes under concurrent joins (LiveKit's
``max_participants`` is only eventually consistent across nodes). Each decision that reads and
then writes (take a seat if the room has room, place a room on the least-loaded live node, free a
dead node's seats) runs as one Lua script, which Redis executes atomically: no other command runs
between its read and its write. One Redis server (or a Sentinel-managed primary); the scripts
touch keys they compute, so Redis Cluster's slot rules are not met and it is not supported.

Keys (``PREFIX`` = ``dc:``):

- ``dc:nodes``                 set of registered node ids
- ``dc:node:<id>``             hash: address, load, version, started (the node's card)
- ``dc:alive:<id>``            present while the node heartbeats (expires after ``ttl``)
- ``dc:place:<room>``          the node id running the room (expires unless refreshed)
- ``dc:noderooms:<id>``        rooms placed on the node
- ``dc:seats:<room>``          hash: identity -> ``session|node|counted``
- ``dc:count:<room>``          counted seats of the room
- ``dc:where``                 hash: identity -> ``room|session|node`` (one room per identity)
- ``dc:nodeseats:<id>``        set of JSON ``[room, identity]`` seated through the node

Room names and identities may contain ``|``; session and node ids are ours and never do, so the
values split from the right (Lua's greedy ``(.*)``).
- ``dc:sitting:<room>``        hash: the room's sitting (``signaling.cluster.sitting``); kept
                               with the placement, left to expire when the node dies
- ``dc:kick:<id>``             pub/sub channel: session ids the node must disconnect (take-over)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PREFIX = "dc:"

# Shared Lua: unseat(room, identity) frees one seat and its indexes.
_UNSEAT = """
local function unseat(room, identity)
  local seat = redis.call('HGET', 'dc:seats:' .. room, identity)
  if not seat then
    redis.call('HDEL', 'dc:where', identity)
    return
  end
  local session, node, counted = string.match(seat, '^(.*)|(.*)|(.*)$')
  redis.call('HDEL', 'dc:seats:' .. room, identity)
  if counted == '1' then
    if redis.call('DECR', 'dc:count:' .. room) <= 0 then
      redis.call('DEL', 'dc:count:' .. room)
    end
  end
  redis.call('SREM', 'dc:nodeseats:' .. node, cjson.encode({room, identity}))
  local where = redis.call('HGET', 'dc:where', identity)
  if where and string.match(where, '^(.*)|.*|.*$') == room then
    redis.call('HDEL', 'dc:where', identity)
  end
end
"""

SEAT_SCRIPT = _UNSEAT + """
-- ARGV: room, identity, session, node, capacity, counted (0/1), take_over (0/1)
local room, identity, session, node = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local capacity, counted, take_over = tonumber(ARGV[5]), ARGV[6], ARGV[7]
local where = redis.call('HGET', 'dc:where', identity)
local prev_room, prev_session, prev_node = '', '', ''
if where then
  prev_room, prev_session, prev_node = string.match(where, '^(.*)|(.*)|(.*)$')
  if take_over ~= '1' then
    return {'already', prev_room, prev_session, prev_node}
  end
end
local count = tonumber(redis.call('GET', 'dc:count:' .. room) or '0')
local frees = 0
if where and prev_room == room then
  local seat = redis.call('HGET', 'dc:seats:' .. room, identity)
  if seat and string.sub(seat, -2) == '|1' then frees = 1 end
end
if counted == '1' and count - frees >= capacity then
  return {'full', tostring(count)}
end
if where then unseat(prev_room, identity) end
redis.call('HSET', 'dc:seats:' .. room, identity, session .. '|' .. node .. '|' .. counted)
if counted == '1' then redis.call('INCR', 'dc:count:' .. room) end
redis.call('HSET', 'dc:where', identity, room .. '|' .. session .. '|' .. node)
redis.call('SADD', 'dc:nodeseats:' .. node, cjson.encode({room, identity}))
return {'ok', prev_room, prev_session, prev_node}
"""

RELEASE_SCRIPT = _UNSEAT + """
-- ARGV: room, identity, session. Only the session holding the seat frees it (a take-over's
-- old session leaving later must not free the new one's seat).
local seat = redis.call('HGET', 'dc:seats:' .. ARGV[1], ARGV[2])
if not seat then return 0 end
local session = string.match(seat, '^(.*)|.*|.*$')
if session ~= ARGV[3] then return 0 end
unseat(ARGV[1], ARGV[2])
return 1
"""

CLEAR_ROOM_SCRIPT = _UNSEAT + """
-- ARGV: room. The meeting ended: every seat of the room goes.
local seats = redis.call('HKEYS', 'dc:seats:' .. ARGV[1])
for _, identity in ipairs(seats) do unseat(ARGV[1], identity) end
return #seats
"""

PLACE_SCRIPT = """
-- ARGV: room, ttl_ms, now (seconds). Returns the node running the room, placing it on the
-- least-loaded live node when it runs nowhere (or on a node that died).
local room, ttl = ARGV[1], tonumber(ARGV[2])
local current = redis.call('GET', 'dc:place:' .. room)
if current and redis.call('EXISTS', 'dc:alive:' .. current) == 1 then
  return current
end
local best, best_load = nil, nil
for _, node in ipairs(redis.call('SMEMBERS', 'dc:nodes')) do
  if redis.call('EXISTS', 'dc:alive:' .. node) == 1 then
    local load = tonumber(redis.call('HGET', 'dc:node:' .. node, 'load') or '0')
    if best == nil or load < best_load or (load == best_load and node < best) then
      best, best_load = node, load
    end
  end
end
if best == nil then return false end
redis.call('SET', 'dc:place:' .. room, best, 'PX', ttl)
redis.call('SADD', 'dc:noderooms:' .. best, room)
-- the new room counts as load at once, so concurrent placements spread
redis.call('HINCRBY', 'dc:node:' .. best, 'load', 1)
return best
"""

REFRESH_SCRIPT = """
-- ARGV: node, ttl_ms, load, room... The node's heartbeat: alive, its load, its rooms kept.
local node, ttl = ARGV[1], tonumber(ARGV[2])
if redis.call('SISMEMBER', 'dc:nodes', node) == 0 then
  return 0  -- declared dead meanwhile: the node must register anew
end
redis.call('SET', 'dc:alive:' .. node, '1', 'PX', ttl)
redis.call('HSET', 'dc:node:' .. node, 'load', ARGV[3])
for i = 4, #ARGV do
  local room = ARGV[i]
  if redis.call('GET', 'dc:place:' .. room) == node then
    redis.call('PEXPIRE', 'dc:place:' .. room, ttl * 10)
    redis.call('PEXPIRE', 'dc:sitting:' .. room, ttl * 20)
  end
end
return 1
"""

FREE_NODE_SCRIPT = _UNSEAT + """
-- ARGV: node. A node that stopped heartbeating: free its seats and unplace its rooms. Runs on
-- every live node's sweep; the first one does the work, the others find nothing.
local node = ARGV[1]
if redis.call('EXISTS', 'dc:alive:' .. node) == 1 then return -1 end
local freed = 0
for _, member in ipairs(redis.call('SMEMBERS', 'dc:nodeseats:' .. node)) do
  local pair = cjson.decode(member)
  local room, identity = pair[1], pair[2]
  local seat = redis.call('HGET', 'dc:seats:' .. room, identity)
  if seat and string.match(seat, '^.*|(.*)|.*$') == node then
    unseat(room, identity)
    freed = freed + 1
  end
end
redis.call('DEL', 'dc:nodeseats:' .. node)
for _, room in ipairs(redis.call('SMEMBERS', 'dc:noderooms:' .. node)) do
  if redis.call('GET', 'dc:place:' .. room) == node then
    redis.call('DEL', 'dc:place:' .. room)
  end
end
redis.call('DEL', 'dc:noderooms:' .. node, 'dc:node:' .. node)
redis.call('SREM', 'dc:nodes', node)
return freed
"""


@dataclass(frozen=True)
class SeatOutcome:
    """What the seat script decided. ``previous_*``: the seat this identity held before (a
    take-over moves it here; without take-over, ``already`` names where it is)."""

    result: str  # "ok" | "full" | "already"
    previous_room: str = ""
    previous_session: str = ""
    previous_node: str = ""
    count: int = 0


def parse_seat_reply(reply: list[Any]) -> SeatOutcome:
    """The seat script's reply (a list of bytes or str) as a ``SeatOutcome``."""
    items = [x.decode() if isinstance(x, bytes) else str(x) for x in reply]
    if not items or items[0] not in ("ok", "full", "already"):
        raise ValueError(f"unexpected seat reply {reply!r}")
    if items[0] == "full":
        return SeatOutcome("full", count=int(items[1]))
    if len(items) != 4:
        raise ValueError(f"unexpected seat reply {reply!r}")
    return SeatOutcome(items[0], items[1], items[2], items[3])


def check_id(value: str, what: str) -> str:
    """Session and node ids are parts of ``|``-joined values: ours, but checked once here."""
    if "|" in value or not value:
        raise ValueError(f"{what} {value!r} is empty or contains '|'")
    return value
