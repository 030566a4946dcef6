"""Tests for the Engine.IO 4 / Socket.IO 5-protocol codec.

Examples come from the protocol documentation and from what the TPOS upstream and
Node clients send; the properties check the codec is symmetric (everything it
encodes it decodes back, everything it decodes it can encode again) and that
untrusted text can only ever cost a PacketError.
"""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from n2gateway.codecs.engineio import (
    EnginePacket,
    EngineType,
    OpenInfo,
    PacketError,
    decode_engine,
    decode_open,
    encode_engine,
    encode_open,
)
from n2gateway.codecs.socketio import (
    SocketPacket,
    SocketType,
    decode_message,
    decode_socket,
    encode_event_frame,
    encode_event_frame_raw,
    encode_message,
    encode_socket,
)

MAX_SAFE_INTEGER = 2**53 - 1
RESERVED_EVENTS = {
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
}

# --- strategies --------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=4)
namespaces = st.just("/") | st.text(max_size=12).filter(lambda s: "," not in s).map(
    lambda s: "/" + s
)
ack_ids = st.none() | st.integers(min_value=0, max_value=MAX_SAFE_INTEGER)
counts = st.integers(min_value=0, max_value=MAX_SAFE_INTEGER)
event_names = st.text(max_size=20).filter(lambda s: s not in RESERVED_EVENTS)
event_data = st.builds(
    lambda name, args: [name, *args], event_names, st.lists(json_values, max_size=4)
)


@st.composite
def socket_packets(draw: st.DrawFn) -> SocketPacket:
    packet_type = draw(st.sampled_from(SocketType))
    data_by_type = {
        SocketType.CONNECT: st.none() | json_objects,
        SocketType.DISCONNECT: st.none(),
        SocketType.CONNECT_ERROR: st.text() | json_objects,
        SocketType.EVENT: event_data,
        SocketType.BINARY_EVENT: event_data,
        SocketType.ACK: st.lists(json_values, max_size=4),
        SocketType.BINARY_ACK: st.lists(json_values, max_size=4),
    }
    binary = packet_type in (SocketType.BINARY_EVENT, SocketType.BINARY_ACK)
    return SocketPacket(
        type=packet_type,
        namespace=draw(namespaces),
        data=draw(data_by_type[packet_type]),
        id=draw(ack_ids),
        attachments=draw(counts) if binary else 0,
    )


# Packets assembled from the protocol's pieces, then garbled at a random place,
# reach far deeper into the parser than arbitrary text, which mostly fails on its
# first character.
@st.composite
def protocolish_text(draw: st.DrawFn) -> str:
    pieces = [
        draw(st.sampled_from("01234560123456789")),
        draw(st.sampled_from(["", "", "1-", "12-", "-", "x-", "1"])),
        draw(st.sampled_from(["", "", "/", "/admin", "/admin,", "/,", "/a,b,"])),
        draw(st.sampled_from(["", "", "0", "12", "007", "9" * 17])),
        draw(
            st.sampled_from(["", "null"])
            | st.builds(json.dumps, json_values | event_data | json_objects)
            | st.sampled_from(['["disconnect"]', '["a",1e400]', '"\\ud83d"'])
        ),
    ]
    text = "".join(pieces)
    garble = draw(st.sampled_from(["", "", " ", "x", "[", "]", ",", "-", "/", "NaN", "٣"]))
    at = draw(st.integers(min_value=0, max_value=len(text)))
    return text[:at] + garble + text[at:]


any_text = st.text() | protocolish_text()


# --- Engine.IO ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ("2", EnginePacket(EngineType.PING)),
        ("3", EnginePacket(EngineType.PONG)),
        ("2probe", EnginePacket(EngineType.PING, "probe")),
        ("3probe", EnginePacket(EngineType.PONG, "probe")),
        ("4hello", EnginePacket(EngineType.MESSAGE, "hello")),
        ("1", EnginePacket(EngineType.CLOSE)),
        ("5", EnginePacket(EngineType.UPGRADE)),
        ("6", EnginePacket(EngineType.NOOP)),
    ],
)
def test_engine_examples(frame: str, expected: EnginePacket) -> None:
    assert decode_engine(frame) == expected
    assert encode_engine(expected) == frame


@pytest.mark.parametrize("frame", ["", "7", "9", "x", "b4AQID", " 2"])
def test_engine_rejects_frames_without_a_known_type(frame: str) -> None:
    with pytest.raises(PacketError):
        decode_engine(frame)


@pytest.mark.parametrize(
    "packet",
    [
        EnginePacket(9),  # type: ignore[arg-type]
        EnginePacket(EngineType.MESSAGE, {"a": 1}),  # type: ignore[arg-type]
        EnginePacket(EngineType.MESSAGE, b"bytes"),  # type: ignore[arg-type]
    ],
)
def test_engine_encode_refuses_what_is_not_a_text_packet(packet: EnginePacket) -> None:
    with pytest.raises(PacketError):
        encode_engine(packet)


@given(st.sampled_from(EngineType), st.text())
def test_engine_round_trip(packet_type: EngineType, data: str) -> None:
    packet = EnginePacket(packet_type, data)
    assert decode_engine(encode_engine(packet)) == packet


def test_open_encodes_the_documented_handshake() -> None:
    info = OpenInfo(sid="abc", ping_interval=25, ping_timeout=20, max_payload=1_000_000)
    assert encode_open(info) == (
        '0{"sid":"abc","upgrades":[],"pingInterval":25000,'
        '"pingTimeout":20000,"maxPayload":1000000}'
    )


def test_open_decodes_a_real_server_handshake_in_seconds() -> None:
    frame = (
        '0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],'
        '"pingInterval":25000,"pingTimeout":5000,"maxPayload":1000000}'
    )
    packet = decode_engine(frame)
    assert packet.type is EngineType.OPEN
    assert decode_open(packet.data) == OpenInfo(
        sid="lv_VI97HAXpY6yYWAAAC",
        ping_interval=25.0,
        ping_timeout=5.0,
        max_payload=1_000_000,
        upgrades=("websocket",),
    )


def test_open_without_max_payload_from_an_older_server_is_accepted() -> None:
    # engine.io before 6.2.0 speaks Engine.IO 4 but does not send maxPayload.
    info = decode_open('{"sid":"s","upgrades":[],"pingInterval":25000,"pingTimeout":20000}')
    assert info.max_payload == 0
    assert info.ping_interval == 25.0


def test_open_ignores_fields_it_does_not_know() -> None:
    info = decode_open(
        '{"sid":"s","upgrades":[],"pingInterval":1,"pingTimeout":2,"future":true}'
    )
    assert info == OpenInfo("s", 0.001, 0.002, 0)


@pytest.mark.parametrize(
    "data",
    [
        "",
        "[]",
        "not json",
        '{"upgrades":[],"pingInterval":25000,"pingTimeout":20000}',
        '{"sid":"","upgrades":[],"pingInterval":25000,"pingTimeout":20000}',
        '{"sid":7,"upgrades":[],"pingInterval":25000,"pingTimeout":20000}',
        '{"sid":"s","pingInterval":25000,"pingTimeout":20000}',
        '{"sid":"s","upgrades":"websocket","pingInterval":25000,"pingTimeout":20000}',
        '{"sid":"s","upgrades":[1],"pingInterval":25000,"pingTimeout":20000}',
        '{"sid":"s","upgrades":[],"pingTimeout":20000}',
        '{"sid":"s","upgrades":[],"pingInterval":"25000","pingTimeout":20000}',
        '{"sid":"s","upgrades":[],"pingInterval":true,"pingTimeout":20000}',
        '{"sid":"s","upgrades":[],"pingInterval":0,"pingTimeout":20000}',
        '{"sid":"s","upgrades":[],"pingInterval":25000,"pingTimeout":-1}',
        '{"sid":"s","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":"1e6"}',
        '{"sid":"s","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1.5}',
    ],
)
def test_open_rejects_missing_or_ill_typed_fields(data: str) -> None:
    with pytest.raises(PacketError):
        decode_open(data)


@given(
    sid=st.text(min_size=1),
    interval_ms=st.integers(min_value=1, max_value=10**9),
    timeout_ms=st.integers(min_value=1, max_value=10**9),
    max_payload=counts,
    upgrades=st.lists(st.text(), max_size=3).map(tuple),
)
def test_open_round_trip(
    sid: str, interval_ms: int, timeout_ms: int, max_payload: int, upgrades: tuple[str, ...]
) -> None:
    info = OpenInfo(sid, interval_ms / 1000, timeout_ms / 1000, max_payload, upgrades)
    packet = decode_engine(encode_open(info))
    assert packet.type is EngineType.OPEN
    assert decode_open(packet.data) == info


# --- Socket.IO: documented examples ------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", SocketPacket(SocketType.CONNECT)),
        (
            '0/admin,{"token":"123"}',
            SocketPacket(SocketType.CONNECT, "/admin", {"token": "123"}),
        ),
        ("1/admin,", SocketPacket(SocketType.DISCONNECT, "/admin")),
        ('2["hello",1]', SocketPacket(SocketType.EVENT, data=["hello", 1])),
        (
            '2/admin,456["project:delete",123]',
            SocketPacket(SocketType.EVENT, "/admin", ["project:delete", 123], id=456),
        ),
        ("3/admin,456[]", SocketPacket(SocketType.ACK, "/admin", [], id=456)),
        (
            '4{"message":"Not authorized"}',
            SocketPacket(SocketType.CONNECT_ERROR, data={"message": "Not authorized"}),
        ),
        (
            '51-["hello",{"_placeholder":true,"num":0}]',
            SocketPacket(
                SocketType.BINARY_EVENT,
                data=["hello", {"_placeholder": True, "num": 0}],
                attachments=1,
            ),
        ),
        (
            '61-/admin,15[{"_placeholder":true,"num":0}]',
            SocketPacket(
                SocketType.BINARY_ACK,
                "/admin",
                [{"_placeholder": True, "num": 0}],
                id=15,
                attachments=1,
            ),
        ),
        (
            '2/chatomni,["join",{"room":"r","token":"t"}]',
            SocketPacket(SocketType.EVENT, "/chatomni", ["join", {"room": "r", "token": "t"}]),
        ),
        ('4"Invalid namespace"', SocketPacket(SocketType.CONNECT_ERROR, data="Invalid namespace")),
    ],
)
def test_socket_documented_examples(text: str, expected: SocketPacket) -> None:
    assert decode_socket(text) == expected
    assert encode_socket(expected) == text


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (
            '40{"sid":"x","pid":"y"}',
            SocketPacket(SocketType.CONNECT, data={"sid": "x", "pid": "y"}),
        ),
        (
            '44{"message":"Not authorized"}',
            SocketPacket(SocketType.CONNECT_ERROR, data={"message": "Not authorized"}),
        ),
        (
            '451-["hello",{"_placeholder":true,"num":0}]',
            SocketPacket(
                SocketType.BINARY_EVENT,
                data=["hello", {"_placeholder": True, "num": 0}],
                attachments=1,
            ),
        ),
        (
            '40/chatomni,{"token":"t","room":"tomato.tpos.vn"}',
            SocketPacket(
                SocketType.CONNECT, "/chatomni", {"token": "t", "room": "tomato.tpos.vn"}
            ),
        ),
        (
            '42/chatomni,["on-events","{\\"Type\\":\\"FastSaleOrder\\"}"]',
            SocketPacket(SocketType.EVENT, "/chatomni", ["on-events", '{"Type":"FastSaleOrder"}']),
        ),
        ("41/chatomni,", SocketPacket(SocketType.DISCONNECT, "/chatomni")),
    ],
)
def test_whole_message_frames(frame: str, expected: SocketPacket) -> None:
    assert decode_message(frame) == expected
    assert encode_message(expected) == frame


def test_namespace_without_comma_runs_to_the_end() -> None:
    # What a client sends to connect to a namespace without auth, written by hand.
    assert decode_socket("0/admin") == SocketPacket(SocketType.CONNECT, "/admin")


def test_explicit_default_namespace_is_the_default_namespace() -> None:
    assert decode_socket('2/,["a"]') == SocketPacket(SocketType.EVENT, "/", ["a"])


def test_ack_id_is_read_after_the_namespace_and_before_the_json() -> None:
    assert decode_socket("3/a,0012[1]") == SocketPacket(SocketType.ACK, "/a", [1], id=12)


def test_json_whitespace_like_node_json_parse_accepts() -> None:
    packet = decode_socket('2 [ "a" , {"b": 1} ]\n')
    assert packet == SocketPacket(SocketType.EVENT, data=["a", {"b": 1}])


def test_encoding_is_compact_and_keeps_non_ascii_text() -> None:
    packet = SocketPacket(SocketType.EVENT, data=["tin nhắn", {"nội dung": "xin chào"}])
    assert encode_socket(packet) == '2["tin nhắn",{"nội dung":"xin chào"}]'


# --- Socket.IO: what is refused ----------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("7", id="unknown type"),
        pytest.param("x", id="non-digit type"),
        pytest.param("٢[\"a\"]", id="non-ASCII digit type"),
        pytest.param('2["a"] x', id="trailing garbage"),
        pytest.param('2["a"]["b"]', id="two JSON values"),
        pytest.param('2["a"', id="truncated JSON"),
        pytest.param("2['a']", id="not JSON"),
        pytest.param('2["a",NaN]', id="NaN"),
        pytest.param('2["a",-Infinity]', id="Infinity"),
        pytest.param('2["a",1e400]', id="number out of range"),
        pytest.param("2" + "[" * 100_000, id="nested too deeply"),
        pytest.param('2["a",' + "1" * 5000 + "]", id="integer too long"),
        pytest.param("2" + "9" * 17 + '["a"]', id="ack id beyond 2**53"),
        pytest.param("2" + "9" * 5000 + '["a"]', id="ack id of 5000 digits"),
        pytest.param("0[]", id="CONNECT array"),
        pytest.param('0"x"', id="CONNECT string"),
        pytest.param("0null", id="CONNECT null"),
        pytest.param("1{}", id="DISCONNECT with data"),
        pytest.param("1/a,null", id="DISCONNECT with null"),
        pytest.param("4", id="CONNECT_ERROR without data"),
        pytest.param("4[]", id="CONNECT_ERROR array"),
        pytest.param("41", id="CONNECT_ERROR number"),
        pytest.param("2", id="EVENT without data"),
        pytest.param("2/admin", id="EVENT without data in a namespace"),
        pytest.param("2[]", id="EVENT empty array"),
        pytest.param('2{"a":1}', id="EVENT object"),
        pytest.param("2[1]", id="EVENT numeric name"),
        pytest.param("2[null]", id="EVENT null name"),
        pytest.param('2["disconnect"]', id="EVENT reserved name"),
        pytest.param('2["connect_error",1]', id="EVENT reserved name connect_error"),
        pytest.param("3", id="ACK without data"),
        pytest.param("3{}", id="ACK object"),
        pytest.param('5["a"]', id="BINARY_EVENT without count"),
        pytest.param('5-["a"]', id="BINARY_EVENT empty count"),
        pytest.param('5-1-["a"]', id="BINARY_EVENT negative count"),
        pytest.param('5x-["a"]', id="BINARY_EVENT non-digit count"),
        pytest.param('51["a"]', id="BINARY_EVENT count without dash"),
        pytest.param("6" + "9" * 20 + "-[]", id="BINARY_ACK count beyond 2**53"),
        pytest.param('51-[]', id="BINARY_EVENT empty array"),
        pytest.param("61-{}", id="BINARY_ACK object"),
    ],
)
def test_socket_rejects_invalid_packets(text: str) -> None:
    with pytest.raises(PacketError):
        decode_socket(text)


@pytest.mark.parametrize("frame", ["", "2", "3", "0{}", '2["a"]', "4", " 42[\"a\"]"])
def test_decode_message_needs_an_engine_message(frame: str) -> None:
    with pytest.raises(PacketError):
        decode_message(frame)


def test_error_message_is_one_line_and_quotes_only_the_start_of_the_input() -> None:
    frame = '42["a","' + "x" * 300 + '\nSECRET"'
    with pytest.raises(PacketError) as caught:
        decode_message(frame)
    message = str(caught.value)
    assert "\n" not in message
    assert "SECRET" not in message
    assert len(message) < 250



@pytest.mark.parametrize(
    "decode, text",
    [
        (decode_engine, "9SECRET"),
        (decode_open, '{"sid":"SECRET"}'),
        (decode_socket, '2/chatomni,["on-events",{"token":"SECRET"'),
        (decode_message, "2SECRET"),
        (decode_message, '42["on-events",{"token":"SECRET"'),
    ],
)
def test_error_reason_never_quotes_the_input(decode, text: str) -> None:
    with pytest.raises(PacketError) as caught:
        decode(text)
    assert "SECRET" in str(caught.value)
    assert "SECRET" not in caught.value.reason
    assert caught.value.reason in str(caught.value)

@pytest.mark.parametrize(
    "packet",
    [
        pytest.param(SocketPacket(SocketType.EVENT, "admin", ["a"]), id="namespace without slash"),
        pytest.param(SocketPacket(SocketType.EVENT, "", ["a"]), id="empty namespace"),
        pytest.param(SocketPacket(SocketType.EVENT, "/a,b", ["a"]), id="comma in namespace"),
        pytest.param(SocketPacket(SocketType.EVENT, data=["a"], id=-1), id="negative id"),
        pytest.param(SocketPacket(SocketType.EVENT, data=["a"], id=2**53), id="id beyond 2**53"),
        pytest.param(SocketPacket(SocketType.EVENT, data=["a"], id=True), id="bool id"),
        pytest.param(
            SocketPacket(SocketType.EVENT, data=["a"], attachments=1), id="attachments on EVENT"
        ),
        pytest.param(
            SocketPacket(SocketType.BINARY_EVENT, data=["a"], attachments=-1),
            id="negative attachments",
        ),
        pytest.param(SocketPacket(SocketType.EVENT, data=["connect"]), id="reserved name"),
        pytest.param(SocketPacket(SocketType.EVENT, data=[1]), id="numeric name"),
        pytest.param(SocketPacket(SocketType.EVENT, data=[]), id="no name"),
        pytest.param(SocketPacket(SocketType.EVENT), id="EVENT without data"),
        pytest.param(SocketPacket(SocketType.CONNECT, data=["a"]), id="CONNECT array"),
        pytest.param(SocketPacket(SocketType.DISCONNECT, data={}), id="DISCONNECT with data"),
        pytest.param(SocketPacket(SocketType.CONNECT_ERROR), id="CONNECT_ERROR without data"),
        pytest.param(SocketPacket(SocketType.ACK, data={}), id="ACK object"),
        pytest.param(SocketPacket(SocketType.EVENT, data=["a", {1, 2}]), id="set is not JSON"),
        pytest.param(SocketPacket(SocketType.EVENT, data=["a", float("nan")]), id="NaN"),
        pytest.param(SocketPacket(SocketType.EVENT, data=["a", float("inf")]), id="Infinity"),
        pytest.param(SocketPacket(9, data=["a"]), id="unknown type"),  # type: ignore[arg-type]
    ],
)
def test_encode_refuses_what_a_node_peer_would_reject(packet: SocketPacket) -> None:
    with pytest.raises(PacketError):
        encode_socket(packet)


# --- Socket.IO: properties ---------------------------------------------------


@given(socket_packets())
def test_socket_round_trip(packet: SocketPacket) -> None:
    assert decode_socket(encode_socket(packet)) == packet


@given(socket_packets())
def test_message_round_trip_through_both_levels(packet: SocketPacket) -> None:
    frame = encode_message(packet)
    engine_packet = decode_engine(frame)
    assert engine_packet.type is EngineType.MESSAGE
    assert decode_socket(engine_packet.data) == packet
    assert decode_message(frame) == packet


@settings(max_examples=500)
@given(any_text)
def test_arbitrary_text_only_ever_raises_packet_error(text: str) -> None:
    for decode in (decode_engine, decode_socket, decode_message, decode_open):
        try:
            decode(text)
        except PacketError as exc:
            assert "\n" not in str(exc)


@settings(max_examples=500)
@given(protocolish_text())
def test_whatever_decodes_encodes_back_to_the_same_packet(text: str) -> None:
    # Decoder and encoder apply the same rules: the gateway can relay anything it
    # accepted without the encoder refusing it.
    try:
        packet = decode_socket(text)
    except PacketError:
        return
    assert decode_socket(encode_socket(packet)) == packet


def test_lone_surrogate_from_json_is_escaped_so_the_frame_stays_utf8() -> None:
    # JSON "\ud83d" (half an emoji, e.g. from truncated chat text) decodes to a lone
    # surrogate, which cannot go in a UTF-8 text frame unless escaped again.
    decoded = decode_message('42["m","chào \\ud83d"]')
    assert decoded.data == ["m", "chào \ud83d"]
    frame = encode_message(decoded)
    frame.encode("utf-8")
    assert decode_message(frame) == decoded


@given(st.lists(st.text(), max_size=3), st.sampled_from(["\ud800", "\udfff"]))
def test_event_frames_with_lone_surrogates_stay_utf8(texts: list[str], lone: str) -> None:
    args = [*texts, lone]
    frame = encode_event_frame("ev", *args)
    frame.encode("utf-8")
    assert decode_message(frame).data == ["ev", *args]


# --- fast paths for broadcasts -----------------------------------------------


@given(event_names, st.lists(json_values, max_size=4), namespaces)
def test_event_frame_equals_the_general_encoder(
    name: str, args: list[object], namespace: str
) -> None:
    frame = encode_event_frame(name, *args, namespace=namespace)
    assert frame == encode_message(SocketPacket(SocketType.EVENT, namespace, [name, *args]))


@given(event_names, st.lists(json_values, max_size=4), namespaces)
def test_raw_event_frame_splices_json_text_unchanged(
    name: str, args: list[object], namespace: str
) -> None:
    # PostgreSQL's jsonb text output has spaces after ':' and ','; it must be
    # spliced as it is and still decode to the same values.
    raw = [json.dumps(arg, ensure_ascii=False) for arg in args]
    frame = encode_event_frame_raw(name, raw, namespace=namespace)
    for text in raw:
        assert text in frame
    assert decode_message(frame) == SocketPacket(SocketType.EVENT, namespace, [name, *args])


def test_raw_event_frame_example() -> None:
    frame = encode_event_frame_raw("message:new", ['{"id": 1, "text": "chào"}', "7"])
    assert frame == '42["message:new",{"id": 1, "text": "chào"},7]'


def test_event_frame_without_arguments() -> None:
    assert encode_event_frame("users:updated") == '42["users:updated"]'
    frame = encode_event_frame_raw("users:updated", [], namespace="/chat")
    assert frame == '42/chat,["users:updated"]'


@pytest.mark.parametrize("name", ["disconnect", "connect", 1, None])
def test_event_frames_refuse_names_a_client_would_reject(name: object) -> None:
    with pytest.raises(PacketError):
        encode_event_frame(name)  # type: ignore[arg-type]
    with pytest.raises(PacketError):
        encode_event_frame_raw(name, ["1"])  # type: ignore[arg-type]


def test_event_frames_refuse_a_bad_namespace() -> None:
    with pytest.raises(PacketError):
        encode_event_frame("ev", 1, namespace="chat")
    with pytest.raises(PacketError):
        encode_event_frame_raw("ev", ["1"], namespace="/a,b")


def test_raw_event_frame_refuses_a_bare_string_of_json() -> None:
    # Passing the payload itself instead of a list of payloads would splice it
    # character by character.
    with pytest.raises(TypeError):
        encode_event_frame_raw("ev", '{"a": 1}')
