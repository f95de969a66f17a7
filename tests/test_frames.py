"""``recorder.frames.parse_frame``: every documented frame shape and every way a frame is bad.

The recorder archives what this function returns and quarantines what it rejects, so each bad case
must raise ``BadFrame`` with its own ``kind`` (grouped on in SQL) and a reason naming the problem,
and no input at all may raise anything else: an unexpected exception would end the recording.
What ``schemas.frames`` writes (a replay's frames) must parse back to exactly what it was given.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from replica.recorder.frames import BadFrame, Command, Connected, parse_frame
from replica.schemas.frames import (
    INT64_MAX,
    MAX_TS_MS,
    ConnectedFrame,
    ReplicaCmdFrame,
    command_frame,
    command_frames,
    connected_frame,
)

PROPERTY = settings(max_examples=300, deadline=None, database=None)
INT_FIELDS = ("seq", "ts_ms", "ingest_ts_us", "publish_ts_us")


def command(**fields) -> dict:
    frame = {
        "type": "replica_cmd",
        "seq": 42,
        "ts_ms": 1_764_000_000_123,
        "ingest_ts_us": 1_764_000_000_123_456,
        "publish_ts_us": 1_764_000_000_124_000,
        "raw_hex": "00ff10ab",
    }
    frame.update(fields)
    return frame


def bad(frame: str | bytes) -> BadFrame:
    with pytest.raises(BadFrame) as info:
        parse_frame(frame)
    return info.value


def test_replica_cmd_becomes_a_command_with_payload_bytes():
    parsed = parse_frame(json.dumps(command()))
    assert type(parsed) is Command
    assert parsed == Command(
        42, 1_764_000_000_123, 1_764_000_000_123_456, 1_764_000_000_124_000, b"\x00\xff\x10\xab"
    )
    assert type(parsed.raw) is bytes


def test_upper_case_hex_and_empty_payload_are_accepted():
    assert parse_frame(json.dumps(command(raw_hex="ABCDEF"))).raw == b"\xab\xcd\xef"
    assert parse_frame(json.dumps(command(raw_hex=""))).raw == b""


def test_largest_allowed_values_are_accepted():
    frame = command(seq=INT64_MAX, ts_ms=MAX_TS_MS, ingest_ts_us=INT64_MAX, publish_ts_us=0)
    assert parse_frame(json.dumps(frame))[:4] == (INT64_MAX, MAX_TS_MS, INT64_MAX, 0)


def test_connected_greeting():
    frame = json.dumps({"type": "connected", "feed": "replica_cmds", "ts_ms": 1_764_000_000_000})
    assert parse_frame(frame) == Connected("replica_cmds", 1_764_000_000_000)


@pytest.mark.parametrize(
    ("fields", "kind", "name"),
    [
        ({"feed": 7, "ts_ms": 1}, "bad_field", "feed"),
        ({"feed": "x", "ts_ms": 1.0}, "bad_field", "ts_ms"),
        ({"feed": "x"}, "missing_field", "ts_ms"),
        ({"ts_ms": 1}, "missing_field", "feed"),
    ],
)
def test_connected_greeting_with_bad_fields(fields, kind, name):
    error = bad(json.dumps({"type": "connected", **fields}))
    assert error.kind == kind
    assert error.reason.endswith(f"`{name}`")


def test_binary_frame():
    error = bad(b'{"type": "connected"}')
    assert error.kind == "binary"
    assert "21 bytes" in error.reason


@pytest.mark.parametrize("text", ["", "{", "not json", '{"type": "replica_cmd",}', "\ufeff{}"])
def test_not_json(text):
    error = bad(text)
    assert error.kind == "not_json"
    assert error.reason.startswith("not JSON")


@pytest.mark.parametrize(
    ("text", "name"),
    [("[1, 2]", "array"), ('"replica_cmd"', "str"), ("42", "int"), ("null", "null")],
)
def test_json_that_is_not_an_object(text, name):
    error = bad(text)
    assert error.kind == "not_object"
    assert name in error.reason


def test_missing_type():
    error = bad(json.dumps({"seq": 1}))
    assert (error.kind, error.reason) == ("missing_field", "Object missing required field `type`")


@pytest.mark.parametrize("kind", ["heartbeat", "", 7, ["replica_cmd"]])
def test_unknown_type(kind):
    error = bad(json.dumps({"type": kind}))
    assert error.kind == "unknown_type"
    assert error.reason.endswith("at `type`")


@pytest.mark.parametrize("name", [*INT_FIELDS, "raw_hex"])
def test_each_missing_command_field(name):
    frame = command()
    del frame[name]
    error = bad(json.dumps(frame))
    assert error.kind == "missing_field"
    assert error.reason == f"Object missing required field `{name}`"


@pytest.mark.parametrize("name", INT_FIELDS)
@pytest.mark.parametrize("value", [42.0, 1.5, True, False, "42", None, [1]])
def test_ill_typed_integer_field(name, value):
    error = bad(json.dumps(command(**{name: value})))
    assert error.kind == "bad_field"
    assert error.reason.startswith("Expected `int`, got `")
    assert error.reason.endswith(f" - at `{name}`")


@pytest.mark.parametrize("value", [1234, None, True, ["00"]])
def test_raw_hex_not_a_string(value):
    error = bad(json.dumps(command(raw_hex=value)))
    assert error.kind == "bad_field"
    assert error.reason.startswith("Expected `str`, got `")
    assert error.reason.endswith(" - at `raw_hex`")


@pytest.mark.parametrize("name", INT_FIELDS)
def test_negative_integer_field(name):
    error = bad(json.dumps(command(**{name: -1})))
    assert error.kind == "out_of_range"
    assert error.reason == f"Expected `int` >= 0 - at `{name}`"


@pytest.mark.parametrize("name", ["seq", "ingest_ts_us", "publish_ts_us"])
def test_integer_field_beyond_int64(name):
    error = bad(json.dumps(command(**{name: INT64_MAX + 1})))
    assert error.kind == "out_of_range"
    assert error.reason == f"Expected `int` <= {INT64_MAX} - at `{name}`"


def test_ts_ms_beyond_year_9999():
    error = bad(json.dumps(command(ts_ms=MAX_TS_MS + 1)))
    assert error.kind == "out_of_range"
    assert error.reason == f"Expected `int` <= {MAX_TS_MS} - at `ts_ms`"


def test_first_bad_field_in_the_frame_is_reported():
    error = bad(json.dumps(command(seq=-1, ts_ms="x")))
    assert error.reason == "Expected `int` >= 0 - at `seq`"


def test_odd_length_hex():
    error = bad(json.dumps(command(raw_hex="abc")))
    assert error.kind == "bad_hex"
    assert error.reason == "raw_hex has an odd length (3)"


@pytest.mark.parametrize(
    ("raw_hex", "char"), [("zz", "z"), ("00 1", " "), ("0é", "é"), ("0x", "x")]
)
def test_non_hex_character(raw_hex, char):
    error = bad(json.dumps(command(raw_hex=raw_hex + "0" * (len(raw_hex) % 2))))
    assert error.kind == "bad_hex"
    assert error.reason == f"raw_hex has a non-hex character {char!r}"


@pytest.mark.parametrize("opener", ["[", '{"a":'])
def test_deeply_nested_json_is_a_bad_frame(opener):
    assert bad(opener * 100_000).kind in ("not_json", "not_object")


@PROPERTY
@given(st.text())
def test_any_text_is_a_frame_or_a_bad_frame(text):
    try:
        assert type(parse_frame(text)) in (Command, Connected)
    except BadFrame as error:
        assert error.kind and error.reason


@PROPERTY
@given(st.binary())
def test_any_bytes_are_a_binary_bad_frame(data):
    assert bad(data).kind == "binary"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=8,
)


@PROPERTY
@given(st.dictionaries(st.sampled_from(["type", *INT_FIELDS, "raw_hex", "feed"]), json_values))
def test_any_json_object_is_a_frame_or_a_bad_frame(frame):
    try:
        parse_frame(json.dumps(frame))
    except BadFrame as error:
        assert error.kind and error.reason


@PROPERTY
@given(
    seq=st.integers(0, INT64_MAX),
    ts_ms=st.integers(0, MAX_TS_MS),
    ingest=st.integers(0, INT64_MAX),
    publish=st.integers(0, INT64_MAX),
    raw=st.binary(max_size=64),
    upper=st.booleans(),
)
def test_valid_frame_round_trips(seq, ts_ms, ingest, publish, raw, upper):
    raw_hex = raw.hex().upper() if upper else raw.hex()
    frame = command(
        seq=seq, ts_ms=ts_ms, ingest_ts_us=ingest, publish_ts_us=publish, raw_hex=raw_hex
    )
    assert parse_frame(json.dumps(frame)) == Command(seq, ts_ms, ingest, publish, raw)


# What a replay writes, the recorder reads back as it was: the two sides of schemas.frames.
int64_fields = st.integers(0, INT64_MAX) | st.sampled_from([0, 1, INT64_MAX - 1, INT64_MAX])
commands = st.builds(
    Command,
    seq=int64_fields,
    ts_ms=st.integers(0, MAX_TS_MS) | st.sampled_from([0, MAX_TS_MS]),
    ingest_ts_us=int64_fields,
    publish_ts_us=int64_fields,
    raw=st.binary(max_size=512),
)


@PROPERTY
@given(commands)
def test_a_command_frame_parses_back_to_its_command(cmd):
    text = command_frame(cmd)
    assert parse_frame(text) == cmd
    assert list(json.loads(text)) == ["type", *ReplicaCmdFrame.__struct_fields__]


@PROPERTY
@given(st.lists(commands, max_size=20))
def test_command_frames_from_columns_are_each_commands_command_frame(cmds):
    """The relay's one-pass framing writes exactly what ``command_frame`` writes."""
    columns = [[getattr(cmd, name) for cmd in cmds] for name in ("seq", "raw", *INT_FIELDS[1:])]
    assert command_frames(*columns) == [command_frame(cmd).encode() for cmd in cmds]


@PROPERTY
@given(feed=st.text(), ts_ms=st.integers(0, INT64_MAX))
def test_a_connected_frame_parses_back_to_its_greeting(feed, ts_ms):
    text = connected_frame(feed, ts_ms)
    assert parse_frame(text) == Connected(feed, ts_ms)
    assert list(json.loads(text)) == ["type", *ConnectedFrame.__struct_fields__]
