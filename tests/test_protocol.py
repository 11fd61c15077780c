from __future__ import annotations

import json

import pytest
from chatlead import protocol
from chatlead.errors import FrameError
from chatlead.protocol import FieldAnswer, Hello, Ping, Submit, VisitorMessage, parse_client_frame
from hypothesis import given
from hypothesis import strategies as st


def test_parses_every_client_frame() -> None:
    hello = parse_client_frame(
        json.dumps(
            {
                "type": "hello",
                "site": "acme",
                "session_id": "s",
                "resume_token": "t",
                "last_seq": 4,
                "page": {"url": "https://a.example/", "referrer": "x"},
            }
        )
    )
    assert hello == Hello(
        site="acme",
        session_id="s",
        resume_token="t",
        last_seq=4,
        page=protocol.Page(url="https://a.example/", referrer="x"),
    )
    assert parse_client_frame('{"type":"message","id":"1","text":"hi"}') == VisitorMessage(
        "1", "hi"
    )
    assert parse_client_frame('{"type":"field","id":"2","name":"email","value":"a"}') == (
        FieldAnswer("2", "email", "a")
    )
    assert parse_client_frame('{"type":"submit","id":"3"}') == Submit("3")
    assert parse_client_frame('{"type":"ping"}') == Ping()


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ("not json", "not valid JSON"),
        ("[1,2]", "JSON object"),
        ('{"id":"1"}', "missing field 'type'"),
        ('{"type":"dance"}', "unknown frame type"),
        ('{"type":"message","text":"hi"}', "missing field 'id'"),
        ('{"type":"message","id":"1"}', "missing field 'text'"),
        ('{"type":"message","id":"1","text":"   "}', "blank"),
        ('{"type":"message","id":1,"text":"x"}', "must be a string"),
        ('{"type":"field","id":"1","name":"email"}', "missing field 'value'"),
        ('{"type":"hello"}', "missing field 'site'"),
        ('{"type":"hello","site":"a","last_seq":-1}', "last_seq"),
        ('{"type":"hello","site":"a","page":"x"}', "page"),
        ('{"type":"message","id":"' + "x" * 65 + '","text":"a"}', "longer than"),
        ('{"type":"message","id":"1","text":"' + "x" * 4001 + '"}', "longer than"),
        ("[" * 100000 + "]" * 100000, "JSON"),
    ],
)
def test_rejects_bad_frames_with_a_reason(raw: str, needle: str) -> None:
    with pytest.raises(FrameError, match=needle):
        parse_client_frame(raw)


def test_frame_error_names_the_frame_id_when_readable() -> None:
    with pytest.raises(FrameError) as info:
        parse_client_frame('{"type":"field","id":"abc","name":"email"}')
    assert info.value.frame_id == "abc"


@given(st.text(max_size=300))
def test_any_text_parses_or_raises_frame_error(text: str) -> None:
    try:
        parse_client_frame(text)
    except FrameError:
        pass


@given(
    st.dictionaries(
        st.sampled_from(["type", "id", "text", "name", "value", "site", "last_seq", "page"]),
        st.one_of(st.none(), st.integers(), st.text(max_size=20), st.lists(st.integers())),
    )
)
def test_any_object_parses_or_raises_frame_error(obj: dict[str, object]) -> None:
    try:
        parse_client_frame(json.dumps(obj))
    except FrameError:
        pass


def test_server_frames_are_json_with_type_first() -> None:
    frame = protocol.ack_frame("x", 3)
    assert frame.startswith('{"type":"ack"')
    assert json.loads(protocol.error_frame(protocol.ErrorCode.BAD_FRAME, "nope", "x")) == {
        "type": "error",
        "code": "bad_frame",
        "message": "nope",
        "id": "x",
    }
    entry = {"seq": 2, "from": "bot", "text": "<b>hi</b>", "ts": 0, "prompt": {"field": "name"}}
    assert json.loads(protocol.message_frame(entry)) == {
        "type": "message",
        "seq": 2,
        "from": "bot",
        "text": "<b>hi</b>",
        "ts": "1970-01-01T00:00:00.000Z",
        "prompt": {"field": "name"},
    }
