"""signaling.messages.decode against docs/protocol.md: every client message, valid and invalid."""

from __future__ import annotations

import json

import pytest

from signaling.messages import (
    MESSAGE_TYPES,
    AudioOnly,
    Chat,
    ChatDelete,
    Documents,
    Hand,
    Ice,
    IceCandidateInit,
    Join,
    Leave,
    Mute,
    Ping,
    ProtocolError,
    Publish,
    Quality,
    Shown,
    SubscribeAnswer,
    Tiles,
    TileSize,
    Uplink,
    decode,
)

SDP = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
CANDIDATE = "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host"

VALID = [
    ("tiles", {"type": "tiles", "tiles": [{"participant_id": "p1", "width": 640, "height": 360,
                                           "visible": False}]},
     Tiles(tiles=[TileSize("p1", 640, 360, False)])),
    ("tiles empty", {"type": "tiles", "tiles": []}, Tiles(tiles=[])),
    ("shown", {"type": "shown", "participant_ids": ["p1", "p2"]},
     Shown(participant_ids=["p1", "p2"])),
    ("shown 64", {"type": "shown", "participant_ids": ["p"] * 64},
     Shown(participant_ids=["p"] * 64)),
    ("audio_only", {"type": "audio_only", "enabled": True}, AudioOnly(enabled=True)),
    ("uplink", {"type": "uplink", "available_bps": 2500000}, Uplink(available_bps=2500000)),
    # (id, message as a Python object, expected struct)
    ("join", {"type": "join", "room": "phong-hop", "name": "An"},
     Join(room="phong-hop", name="An")),
    ("join with token", {"type": "join", "room": "r", "name": "n", "token": "t0k"},
     Join(room="r", name="n", token="t0k")),
    ("join null token", {"type": "join", "room": "r", "name": "n", "token": None},
     Join(room="r", name="n")),
    ("join 64-char room and name", {"type": "join", "room": "R" * 64, "name": "N" * 64},
     Join(room="R" * 64, name="N" * 64)),
    ("join case-sensitive room", {"type": "join", "room": "Phong", "name": "x"},
     Join(room="Phong", name="x")),
    ("join non-ASCII (64 characters, not bytes)",
     {"type": "join", "room": "điểm cầu" * 8, "name": "Nguyễn Văn Ân"},
     Join(room="điểm cầu" * 8, name="Nguyễn Văn Ân")),
    ("join 64 emoji", {"type": "join", "room": "\U0001f600" * 64, "name": "x"},
     Join(room="\U0001f600" * 64, name="x")),
    ("join unknown fields ignored", {"type": "join", "room": "r", "name": "n", "extra": [1, {}]},
     Join(room="r", name="n")),
    ("publish", {"type": "publish", "sdp": SDP}, Publish(sdp=SDP)),
    ("subscribe_answer", {"type": "subscribe_answer", "sdp": SDP}, SubscribeAnswer(sdp=SDP)),
    ("ice publisher", {"type": "ice", "target": "publisher",
                       "candidate": {"candidate": CANDIDATE, "sdpMid": "0", "sdpMLineIndex": 0}},
     Ice(target="publisher",
         candidate=IceCandidateInit(candidate=CANDIDATE, sdpMid="0", sdpMLineIndex=0))),
    ("ice subscriber, mid only", {"type": "ice", "target": "subscriber",
                                  "candidate": {"candidate": CANDIDATE, "sdpMid": "1"}},
     Ice(target="subscriber", candidate=IceCandidateInit(candidate=CANDIDATE, sdpMid="1"))),
    ("ice end of candidates: null", {"type": "ice", "target": "publisher", "candidate": None},
     Ice(target="publisher", candidate=None)),
    ("ice end of candidates: missing", {"type": "ice", "target": "publisher"},
     Ice(target="publisher")),
    ("ice end of candidates: empty string",
     {"type": "ice", "target": "subscriber", "candidate": {"candidate": ""}},
     Ice(target="subscriber", candidate=IceCandidateInit(candidate=""))),
    ("ice max index", {"type": "ice", "target": "publisher",
                       "candidate": {"candidate": CANDIDATE, "sdpMLineIndex": 65535}},
     Ice(target="publisher", candidate=IceCandidateInit(candidate=CANDIDATE,
                                                        sdpMLineIndex=65535))),
    ("mute audio", {"type": "mute", "kind": "audio", "muted": True},
     Mute(kind="audio", muted=True)),
    ("unmute video", {"type": "mute", "kind": "video", "muted": False},
     Mute(kind="video", muted=False)),
    ("leave", {"type": "leave"}, Leave()),
    ("ping", {"type": "ping"}, Ping()),
    ("ping string id", {"type": "ping", "id": "abc"}, Ping(id="abc")),
    ("ping int id", {"type": "ping", "id": 7}, Ping(id=7)),
    ("ping negative id", {"type": "ping", "id": -1}, Ping(id=-1)),
    ("ping null id", {"type": "ping", "id": None}, Ping()),
    ("chat", {"type": "chat", "text": "Chào cả phòng"}, Chat(text="Chào cả phòng")),
    ("chat_delete", {"type": "chat_delete", "id": 3}, ChatDelete(id=3)),
    ("hand", {"type": "hand", "raised": True}, Hand(raised=True)),
    ("hand lowered by a host", {"type": "hand", "raised": False, "participant_id": "p1"},
     Hand(raised=False, participant_id="p1")),
    ("quality", {"type": "quality", "loss": 0.01, "rtt_ms": 40, "layer": 2},
     Quality(loss=0.01, rtt_ms=40, layer=2)),
    ("documents", {"type": "documents"}, Documents()),
]


@pytest.mark.parametrize(("message", "expected"), [c[1:] for c in VALID],
                         ids=[c[0] for c in VALID])
def test_valid_messages(message: dict, expected: object) -> None:
    raw = json.dumps(message, ensure_ascii=False)
    assert decode(raw) == expected
    assert decode(raw.encode()) == expected  # bytes too
    assert decode(json.dumps(message, indent=2)) == expected  # whitespace, \u escapes


def test_every_documented_type_has_a_valid_case() -> None:
    assert set(MESSAGE_TYPES) == {"join", "publish", "subscribe_answer", "ice", "mute", "tiles",
                                  "audio_only", "uplink", "leave", "ping", "chat",
                                  "chat_delete", "hand", "quality", "documents", "shown"}
    assert {c[1]["type"] for c in VALID} == set(MESSAGE_TYPES)


# -- bad-json ------------------------------------------------------------------------------------

BAD_JSON = [
    ("empty frame", "", "not valid JSON"),
    ("truncated object", '{"type": "ping"', "not valid JSON"),
    ("garbage", "hello", "not valid JSON"),
    ("trailing garbage", '{"type": "ping"} x', "not valid JSON"),
    ("two objects", '{"type": "ping"}{"type": "ping"}', "not valid JSON"),
    ("single quotes", "{'type': 'ping'}", "not valid JSON"),
    ("NaN", '{"type": "ping", "id": NaN}', "not valid JSON"),
    ("BOM", '\ufeff{"type": "ping"}', "not valid JSON"),
    ("lone surrogate", '{"type": "join", "room": "\\ud800", "name": "x"}', "not valid JSON"),
    ("invalid UTF-8 outside strings", b'{"type": "ping"}\xff', "not valid JSON"),
    ("array", "[]", "a message must be a JSON object"),
    ("array of a message", '[{"type": "ping"}]', "a message must be a JSON object"),
    ("string", '"ping"', "a message must be a JSON object"),
    ("number", "42", "a message must be a JSON object"),
    ("null", "null", "a message must be a JSON object"),
    ("true", "true", "a message must be a JSON object"),
    ("deep array", "[" * 5000 + "]" * 5000, "a message must be a JSON object"),
]


@pytest.mark.parametrize(("raw", "text"), [c[1:] for c in BAD_JSON], ids=[c[0] for c in BAD_JSON])
def test_bad_json(raw: str | bytes, text: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode(raw)
    error = info.value
    assert error.code == "bad-json"
    assert text in error.message
    assert error.ref is None
    assert error.to_json() == {"type": "error", "code": "bad-json", "message": error.message}


@pytest.mark.parametrize("depth", [200, 900])
def test_nested_json_within_limits_is_fine(depth: int) -> None:
    nested = "[" * depth + "]" * depth
    assert decode('{"type": "ping", "extra": ' + nested + "}") == Ping()
    with pytest.raises(ProtocolError) as info:
        decode('{"type": "ping", "id": ' + nested + "}")
    assert info.value.code == "bad-message" and "$.id" in info.value.message


@pytest.mark.parametrize("template", ['{"type": "ping", "extra": %s}', '{"type": "ping", "id": %s}',
                                      '{"extra": %s, "type": "ping"}', '{"type": %s}'])
def test_deeply_nested_json_is_bad_json(template: str) -> None:
    raw = template.replace("%s", "[" * 1000 + "]" * 1000)
    assert len(raw) < 4096
    with pytest.raises(ProtocolError) as info:
        decode(raw)
    assert info.value.code in ("bad-json", "bad-message", "unknown-type")


@pytest.mark.parametrize("raw", [b'{"type": "\xff\xfe"}', b'{"type": "ping", "id": "\xc3"}',
                                 '{"type": "\ud800"}', '{"type": "ping", "id": "\udfff"}'],
                         ids=["bytes: 0xff in type", "bytes: cut UTF-8 sequence in id",
                              "str: lone surrogate in type", "str: lone surrogate in id"])
def test_invalid_unicode_is_bad_json(raw: str | bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        decode(raw)
    assert info.value.code == "bad-json"


# -- unknown-type --------------------------------------------------------------------------------

UNKNOWN_TYPE = [
    ("empty object", {}, "message has no `type`"),
    ("no type", {"room": "r", "name": "n"}, "message has no `type`"),
    ("unknown type", {"type": "hello"}, "'hello'"),
    ("server-side type", {"type": "joined"}, "'joined'"),
    ("wrong case", {"type": "JOIN", "room": "r", "name": "n"}, "'JOIN'"),
    ("empty type", {"type": ""}, "''"),
    ("type is a number", {"type": 5}, "`$.type`"),
    ("type is null", {"type": None}, "`$.type`"),
    ("type is a list", {"type": ["join"]}, "`$.type`"),
    ("type is an object", {"type": {"join": 1}}, "`$.type`"),
]


@pytest.mark.parametrize(("message", "text"), [c[1:] for c in UNKNOWN_TYPE],
                         ids=[c[0] for c in UNKNOWN_TYPE])
def test_unknown_type(message: dict, text: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode(json.dumps(message))
    error = info.value
    assert error.code == "unknown-type"
    assert text in error.message
    # the answer lists what is accepted
    assert "expected one of " + ", ".join(MESSAGE_TYPES) in error.message
    assert error.ref is None


# -- bad-message ---------------------------------------------------------------------------------

BAD_MESSAGE = [
    ("tiles not a list", {"type": "tiles", "tiles": {}}, "$.tiles", "tiles"),
    ("tile width negative", {"type": "tiles", "tiles": [
        {"participant_id": "p", "width": -1, "height": 1}]}, "$.tiles[0].width", "tiles"),
    ("audio_only not bool", {"type": "audio_only", "enabled": "yes"}, "$.enabled",
     "audio_only"),
    ("uplink negative", {"type": "uplink", "available_bps": -1}, "$.available_bps", "uplink"),
    # (id, message, field named in the error message, ref)
    ("join: no room", {"type": "join", "name": "n"}, "`room`", "join"),
    ("join: no name", {"type": "join", "room": "r"}, "`name`", "join"),
    ("join: nothing", {"type": "join"}, "`room`", "join"),
    ("join: empty room", {"type": "join", "room": "", "name": "n"}, "`$.room`", "join"),
    ("join: empty name", {"type": "join", "room": "r", "name": ""}, "`$.name`", "join"),
    ("join: 65-char room", {"type": "join", "room": "r" * 65, "name": "n"}, "`$.room`", "join"),
    ("join: 65-char name", {"type": "join", "room": "r", "name": "n" * 65}, "`$.name`", "join"),
    ("join: 65 emoji", {"type": "join", "room": "\U0001f600" * 65, "name": "n"}, "`$.room`",
     "join"),
    ("join: room is a number", {"type": "join", "room": 1, "name": "n"}, "`$.room`", "join"),
    ("join: room is null", {"type": "join", "room": None, "name": "n"}, "`$.room`", "join"),
    ("join: room is a list", {"type": "join", "room": ["r"], "name": "n"}, "`$.room`", "join"),
    ("join: name is an object", {"type": "join", "room": "r", "name": {}}, "`$.name`", "join"),
    ("join: token is a number", {"type": "join", "room": "r", "name": "n", "token": 5},
     "`$.token`", "join"),
    ("publish: no sdp", {"type": "publish"}, "`sdp`", "publish"),
    ("publish: empty sdp", {"type": "publish", "sdp": ""}, "`$.sdp`", "publish"),
    ("publish: sdp is an object", {"type": "publish", "sdp": {"type": "offer", "sdp": SDP}},
     "`$.sdp`", "publish"),
    ("subscribe_answer: no sdp", {"type": "subscribe_answer"}, "`sdp`", "subscribe_answer"),
    ("subscribe_answer: sdp is a number", {"type": "subscribe_answer", "sdp": 5}, "`$.sdp`",
     "subscribe_answer"),
    ("ice: no target", {"type": "ice", "candidate": None}, "`target`", "ice"),
    ("ice: bad target", {"type": "ice", "target": "both"}, "`$.target`", "ice"),
    ("ice: target wrong case", {"type": "ice", "target": "Publisher"}, "`$.target`", "ice"),
    ("ice: target is a number", {"type": "ice", "target": 0}, "`$.target`", "ice"),
    ("ice: candidate is a string", {"type": "ice", "target": "publisher", "candidate": CANDIDATE},
     "`$.candidate`", "ice"),
    ("ice: candidate.candidate is a number",
     {"type": "ice", "target": "publisher", "candidate": {"candidate": 5}},
     "`$.candidate.candidate`", "ice"),
    ("ice: candidate too long",
     {"type": "ice", "target": "publisher", "candidate": {"candidate": "a" * 1025}},
     "`$.candidate.candidate`", "ice"),
    ("ice: sdpMid is a number",
     {"type": "ice", "target": "publisher", "candidate": {"candidate": CANDIDATE, "sdpMid": 0}},
     "`$.candidate.sdpMid`", "ice"),
    ("ice: sdpMid too long",
     {"type": "ice", "target": "publisher", "candidate": {"sdpMid": "m" * 65}},
     "`$.candidate.sdpMid`", "ice"),
    ("ice: negative sdpMLineIndex",
     {"type": "ice", "target": "publisher", "candidate": {"sdpMLineIndex": -1}},
     "`$.candidate.sdpMLineIndex`", "ice"),
    ("ice: sdpMLineIndex too big",
     {"type": "ice", "target": "publisher", "candidate": {"sdpMLineIndex": 65536}},
     "`$.candidate.sdpMLineIndex`", "ice"),
    ("ice: sdpMLineIndex is a string",
     {"type": "ice", "target": "publisher", "candidate": {"sdpMLineIndex": "0"}},
     "`$.candidate.sdpMLineIndex`", "ice"),
    ("mute: no kind", {"type": "mute", "muted": True}, "`kind`", "mute"),
    ("mute: no muted", {"type": "mute", "kind": "video"}, "`muted`", "mute"),
    ("mute: bad kind", {"type": "mute", "kind": "screen", "muted": True}, "`$.kind`", "mute"),
    ("mute: muted is a string", {"type": "mute", "kind": "audio", "muted": "true"}, "`$.muted`",
     "mute"),
    ("mute: muted is 1", {"type": "mute", "kind": "audio", "muted": 1}, "`$.muted`", "mute"),
    ("mute: muted is null", {"type": "mute", "kind": "audio", "muted": None}, "`$.muted`", "mute"),
    ("shown: no ids", {"type": "shown"}, "`participant_ids`", "shown"),
    ("shown: 65 ids", {"type": "shown", "participant_ids": ["p"] * 65}, "`$.participant_ids`",
     "shown"),
    ("shown: id too long", {"type": "shown", "participant_ids": ["p" * 65]},
     "`$.participant_ids[0]`", "shown"),
    ("shown: id is a number", {"type": "shown", "participant_ids": [1]},
     "`$.participant_ids[0]`", "shown"),
    ("ping: id is a bool", {"type": "ping", "id": True}, "`$.id`", "ping"),
    ("ping: id is a float", {"type": "ping", "id": 1.5}, "`$.id`", "ping"),
    ("ping: id is a list", {"type": "ping", "id": [1]}, "`$.id`", "ping"),
    ("ping: id is an object", {"type": "ping", "id": {"a": 1}}, "`$.id`", "ping"),
    ("chat: too long", {"type": "chat", "text": "x" * 2001}, "`$.text`", "chat"),
    ("chat: not a string", {"type": "chat", "text": 1}, "`$.text`", "chat"),
    ("chat_delete: id 0", {"type": "chat_delete", "id": 0}, "`$.id`", "chat_delete"),
    ("hand: raised is a string", {"type": "hand", "raised": "1"}, "`$.raised`", "hand"),
    ("quality: loss over 1", {"type": "quality", "loss": 1.5}, "`$.loss`", "quality"),
]


@pytest.mark.parametrize(("message", "field", "ref"), [c[1:] for c in BAD_MESSAGE],
                         ids=[c[0] for c in BAD_MESSAGE])
def test_bad_message_names_the_field(message: dict, field: str, ref: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode(json.dumps(message))
    error = info.value
    assert error.code == "bad-message"
    assert field in error.message, error.message
    assert error.ref == ref
    assert error.to_json() == {"type": "error", "code": "bad-message", "message": error.message,
                               "ref": ref}


def test_every_documented_type_has_an_invalid_case() -> None:
    # leave and documents take no fields: they have no invalid form but a wrong type
    assert {c[1]["type"] for c in BAD_MESSAGE} == set(MESSAGE_TYPES) - {"leave", "documents"}


def test_protocol_error_to_json() -> None:
    error = ProtocolError("bad-state", "no subscribe_offer is waiting for an answer",
                          "subscribe_answer")
    assert str(error) == "no subscribe_offer is waiting for an answer"
    assert error.to_json() == {"type": "error", "code": "bad-state",
                               "message": "no subscribe_offer is waiting for an answer",
                               "ref": "subscribe_answer"}
    assert "ref" not in ProtocolError("internal", "x").to_json()
