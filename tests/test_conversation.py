"""The connection core without a network: every rule of a widget connection, in ms."""

from __future__ import annotations

import json
from typing import Any

import pytest
from chatlead.conversation import (
    WIRE_CODES,
    ConnState,
    Conversation,
    IllegalTransition,
    Reply,
    SessionView,
    VisitorCommand,
)
from chatlead.errors import FieldInvalid, FrameError, StoreError
from chatlead.protocol import (
    CloseCode,
    ErrorCode,
    FieldAnswer,
    Hello,
    Page,
    Ping,
    Submit,
    VisitorMessage,
    parse_client_frame,
)
from chatlead.session import SessionRecord, SessionStatus, Verdict, token_hash
from chatlead.sites import FlowStep, Site
from chatlead.units import TokenBucket

SITE = Site(id="acme", idle_timeout=60)
TOKEN = "resume-token-0123456789"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def frames(reply: Reply) -> list[dict[str, Any]]:
    return [json.loads(f) for f in reply.frames]


def codes(reply: Reply) -> list[str]:
    return [f.get("code", f["type"]) for f in frames(reply)]


def record(**overrides: Any) -> SessionRecord:
    base: dict[str, Any] = {
        "id": "s1",
        "site": "acme",
        "status": SessionStatus.OPEN,
        "seq": 2,
        "created_ms": 1,
        "active_ms": 1,
        "step": "name",
        "user_id": "v_1",
        "token_hash": token_hash(TOKEN),
    }
    return SessionRecord(**{**base, **overrides})


def conversation(clock: Clock | None = None, rate: float = 10, burst: int = 3) -> Conversation:
    return Conversation(rate, burst, clock or Clock())


def ready(clock: Clock | None = None, status: SessionStatus = SessionStatus.OPEN) -> Conversation:
    conv = conversation(clock)
    conv.resumed(record(status=status), SITE, TOKEN, 0)
    return conv


def new_ready(clock: Clock | None = None) -> Conversation:
    conv = conversation(clock)
    hello = Hello(site="acme")
    new = Conversation.new_session(SITE, hello, "s1", TOKEN, "v_1")
    conv.created(new, SITE, len(new.entries), 5)
    return conv


# --- states ---------------------------------------------------------------------


def test_a_connection_starts_waiting_for_hello() -> None:
    assert conversation().state is ConnState.AWAITING_HELLO


def test_hello_then_close_are_the_only_way_forward() -> None:
    conv = conversation()
    conv.advance(ConnState.READY)
    conv.advance(ConnState.CLOSING)
    assert conv.state is ConnState.CLOSING


def test_closing_twice_changes_nothing() -> None:
    conv = conversation()
    conv.advance(ConnState.CLOSING)
    conv.advance(ConnState.CLOSING)
    assert conv.state is ConnState.CLOSING


@pytest.mark.parametrize(
    ("path"),
    [
        (ConnState.READY, ConnState.READY),
        (ConnState.CLOSING, ConnState.READY),
        (ConnState.AWAITING_HELLO,),
        (ConnState.READY, ConnState.AWAITING_HELLO),
    ],
)
def test_illegal_transitions_raise(path: tuple[ConnState, ...]) -> None:
    conv = conversation()
    with pytest.raises(IllegalTransition):
        for state in path:
            conv.advance(state)


def test_a_visitor_event_before_the_session_is_a_bug() -> None:
    with pytest.raises(IllegalTransition):
        conversation().decide(VisitorMessage(id="1", text="hi"))


# --- the token bucket -------------------------------------------------------------


def test_the_bucket_allows_its_burst_then_refuses() -> None:
    bucket = TokenBucket(1, 3, Clock())
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]


def test_the_bucket_refills_with_time() -> None:
    clock = Clock()
    bucket = TokenBucket(2, 1, clock)
    assert bucket.take() and not bucket.take()
    clock.now += 0.5
    assert bucket.take()


def test_the_bucket_never_holds_more_than_its_burst() -> None:
    clock = Clock()
    bucket = TokenBucket(10, 2, clock)
    clock.now += 3600
    assert [bucket.take() for _ in range(3)] == [True, True, False]


# --- the first frame ------------------------------------------------------------


def test_a_hello_is_the_way_in() -> None:
    hello = Hello(site="acme")
    assert conversation().first_frame(hello) is hello


def test_no_frame_in_time_closes_4400() -> None:
    conv = conversation()
    reply = conv.first_frame(None)
    assert isinstance(reply, Reply)
    assert reply.close is CloseCode.NO_HELLO and reply.frames == ()
    assert conv.state is ConnState.CLOSING


def test_another_first_frame_gets_bad_frame_and_4400() -> None:
    reply = conversation().first_frame(VisitorMessage(id="1", text="hi"))
    assert isinstance(reply, Reply)
    assert codes(reply) == ["bad_frame"] and reply.close is CloseCode.NO_HELLO


def test_garbage_first_gets_the_parse_error_and_4400() -> None:
    reply = conversation().first_frame(FrameError("frame is not JSON"))
    assert isinstance(reply, Reply)
    assert frames(reply)[0]["message"] == "frame is not JSON"
    assert reply.close is CloseCode.NO_HELLO


def test_an_unknown_site_closes_4404() -> None:
    conv = conversation()
    reply = conv.unknown_site("nope")
    assert codes(reply) == ["unknown_site"] and reply.close is CloseCode.UNKNOWN_SITE
    assert conv.state is ConnState.CLOSING


def test_a_refusal_sends_its_reason_then_closes() -> None:
    reply = conversation().refused(ErrorCode.RATE_LIMITED, "busy", CloseCode.TOO_MANY)
    assert codes(reply) == ["rate_limited"] and reply.close is CloseCode.TOO_MANY


# --- resume ---------------------------------------------------------------------


def _hello(**kw: Any) -> Hello:
    return Hello(site="acme", session_id="s1", resume_token=TOKEN, **kw)


def test_the_right_token_resumes() -> None:
    assert Conversation.may_resume(record(), _hello(), SITE)


@pytest.mark.parametrize(
    ("rec", "hello", "site"),
    [
        (None, _hello(), SITE),
        (record(), Hello(site="acme", session_id="s1", resume_token="wrong"), SITE),
        (record(), Hello(site="acme", session_id="s1"), SITE),
        (record(site="other"), _hello(), SITE),
    ],
)
def test_anything_else_never_resumes(rec: Any, hello: Hello, site: Site) -> None:
    assert not Conversation.may_resume(rec, hello, site)


def test_resuming_sends_what_the_widget_missed() -> None:
    conv = conversation()
    entries = ({"from": "bot", "text": "Hi", "seq": 2, "ts": 1},)
    reply = conv.resumed(record(transcript=entries, fields={"name": "Ada"}), SITE, TOKEN, 0)
    (welcome,) = frames(reply)
    assert welcome["resumed"] is True and welcome["seq"] == 2
    assert [m["text"] for m in welcome["transcript"]] == ["Hi"]
    assert welcome["fields"] == [{"name": "name", "value": "Ada"}]
    assert conv.state is ConnState.READY


def test_a_resumed_completed_session_has_no_prompt() -> None:
    reply = conversation().resumed(record(status=SessionStatus.COMPLETED), SITE, TOKEN, 0)
    assert "prompt" not in frames(reply)[0]


# --- a new session --------------------------------------------------------------


def test_a_new_session_stores_a_hash_of_its_token_never_the_token() -> None:
    new = Conversation.new_session(SITE, Hello(site="acme"), "s1", TOKEN, "v_1")
    assert new.meta["tok"] == token_hash(TOKEN) and TOKEN not in json.dumps(new.meta)


def test_a_new_session_stores_the_user_id_it_is_given() -> None:
    # the socket resolves it from hello.user_id and hello.identity (test_identity.py)
    new = Conversation.new_session(SITE, Hello(site="acme", user_id="v_mine"), "s1", TOKEN, "v_1")
    assert new.user_id == new.meta["uid"] == "v_1"


def test_a_new_session_records_the_page_and_source() -> None:
    hello = Hello(site="acme", page=Page(url="https://a.example/?utm_source=ads"), source="ppc")
    new = Conversation.new_session(SITE, hello, "s1", TOKEN, "v_1")
    assert new.meta["utm_source"] == "ads" and new.meta["source"] == "ppc"


def test_the_welcome_numbers_the_opening_messages() -> None:
    conv = conversation()
    new = Conversation.new_session(SITE, Hello(site="acme"), "s1", TOKEN, "v_1")
    (welcome,) = frames(conv.created(new, SITE, len(new.entries), 77))
    assert [m["seq"] for m in welcome["transcript"]] == list(range(1, len(new.entries) + 1))
    assert welcome["resumed"] is False and welcome["prompt"]["field"] == "name"
    assert conv.view is not None and conv.view.seq == len(new.entries)


# --- frames once ready ----------------------------------------------------------


def test_a_ping_gets_a_pong() -> None:
    assert codes(ready().frame(Ping())) == ["pong"]  # type: ignore[arg-type]


def test_a_second_hello_is_a_bad_frame_not_a_transition() -> None:
    conv = ready()
    reply = conv.frame(Hello(site="acme"))
    assert isinstance(reply, Reply) and codes(reply) == ["bad_frame"]
    assert conv.state is ConnState.READY


def test_a_bad_frame_keeps_the_socket_open_and_names_its_id() -> None:
    reply = ready().frame(FrameError("missing field 'text'", "f1"))
    assert isinstance(reply, Reply) and reply.close is None
    assert frames(reply)[0]["id"] == "f1"


def test_a_message_becomes_a_store_command() -> None:
    command = ready().frame(VisitorMessage(id="m1", text="hello"))
    assert isinstance(command, VisitorCommand)
    assert command.visitor_entry == {"from": "visitor", "text": "hello"}
    assert command.client_id == "m1" and command.expected_seq == 2


def test_a_field_answer_is_normalised_before_it_is_stored() -> None:
    conv = ready()
    assert conv.view is not None
    conv.view.fields["name"] = "Ada"
    command = conv.frame(FieldAnswer(id="f1", name="email", value=" Ada@Example.com "))
    assert isinstance(command, VisitorCommand)
    assert command.updates["email"] == "Ada@example.com"  # trimmed, the domain lowercased
    assert command.visitor_entry is not None and command.visitor_entry["field"] == "email"


def test_an_invalid_answer_is_refused_with_the_question_again() -> None:
    conv = ready()
    assert conv.view is not None
    conv.view.fields["name"] = "Ada"
    reply = conv.frame(FieldAnswer(id="f1", name="email", value="not-an-email"))
    assert isinstance(reply, Reply) and codes(reply) == ["invalid_field"]
    assert "email" in frames(reply)[0]["message"].lower()


def test_the_last_answer_completes() -> None:
    site = Site(id="acme", flow=[FlowStep(field="name", ask="Name?")])
    conv = conversation()
    conv.resumed(record(), site, TOKEN, 0)
    command = conv.frame(FieldAnswer(id="f1", name="name", value="Ada"))
    assert isinstance(command, VisitorCommand) and command.completes


def test_a_completed_session_sends_nothing_new_to_the_store() -> None:
    command = ready(status=SessionStatus.COMPLETED).frame(Submit(id="s"))
    assert isinstance(command, VisitorCommand)
    assert command.updates == {} and command.visitor_entry is None and not command.completes


def test_frames_over_the_rate_are_refused_without_an_ack() -> None:
    conv = ready()
    replies = [conv.frame(Ping()) for _ in range(4)]  # type: ignore[arg-type]
    last = replies[-1]
    assert isinstance(last, Reply) and codes(last) == ["rate_limited"] and last.close is None


def test_a_flood_closes_4429() -> None:
    conv = ready()
    replies = [conv.frame(VisitorMessage(id=str(i), text="x")) for i in range(3 + 4)]
    last = replies[-1]
    assert isinstance(last, Reply) and last.close is CloseCode.TOO_MANY
    assert conv.state is ConnState.CLOSING


def test_a_frame_within_the_rate_forgives_earlier_strikes() -> None:
    clock = Clock()
    conv = ready(clock)
    for _ in range(5):
        conv.frame(Ping())  # type: ignore[arg-type]
    clock.now += 10
    conv.frame(Ping())  # type: ignore[arg-type]
    assert conv.strikes == 0


# --- what the store answered ----------------------------------------------------


def _command(conv: Conversation, text: str = "hi") -> VisitorCommand:
    command = conv.frame(VisitorMessage(id="m1", text=text))
    assert isinstance(command, VisitorCommand)
    return command


def test_stored_is_acked_with_its_seq_and_the_bots_replies() -> None:
    conv = ready()
    command = _command(conv)
    reply = conv.stored(command, Verdict.OK, seq=3, first_bot_seq=4, now_ms=9)
    assert codes(reply)[0] == "ack" and frames(reply)[0]["seq"] == 3
    assert all(f["seq"] >= 4 for f in frames(reply)[1:])
    assert reply.accepted and not reply.completed


def test_storing_moves_the_view_to_the_last_seq() -> None:
    conv = ready()
    command = _command(conv)
    bots = len(command.bots)
    conv.stored(command, Verdict.OK, seq=3, first_bot_seq=4, now_ms=9)
    assert conv.view is not None and conv.view.seq == (4 + bots - 1 if bots else 3)


def test_a_duplicate_is_acked_again_with_the_first_seq() -> None:
    conv = ready()
    reply = conv.stored(_command(conv), Verdict.DUP, seq=3)
    assert frames(reply) == [{"type": "ack", "id": "m1", "seq": 3}]


def test_a_stale_view_asks_for_a_reload() -> None:
    conv = ready()
    assert conv.stored(_command(conv), Verdict.STALE, seq=9).retry


def test_a_reload_brings_the_view_up_to_date() -> None:
    conv = ready()
    conv.reloaded(record(seq=9, fields={"name": "Ada"}))
    assert conv.view is not None and conv.view.seq == 9 and conv.view.fields == {"name": "Ada"}
    conv.reloaded(None)  # gone meanwhile: the store will say so
    assert conv.view.seq == 9


@pytest.mark.parametrize("verdict", [Verdict.CLOSED, Verdict.GONE])
def test_a_closed_or_gone_session_is_read_only(verdict: Verdict) -> None:
    conv = ready()
    reply = conv.stored(_command(conv), verdict)
    assert codes(reply) == ["session_closed"]
    assert conv.view is not None and conv.view.status is SessionStatus.COMPLETED


def test_the_sessions_bucket_refusal_is_a_strike() -> None:
    conv = ready()
    reply = conv.stored(_command(conv), Verdict.LIMITED)
    assert codes(reply) == ["rate_limited"] and conv.strikes == 1


def test_a_full_transcript_closes_4429() -> None:
    conv = ready()
    reply = conv.stored(_command(conv), Verdict.FULL)
    assert codes(reply) == ["rate_limited"] and reply.close is CloseCode.TOO_MANY


def test_completing_sends_the_lead_frame() -> None:
    site = Site(id="acme", flow=[FlowStep(field="name", ask="Name?")])
    conv = conversation()
    conv.resumed(record(), site, TOKEN, 0)
    command = conv.frame(FieldAnswer(id="f1", name="name", value="Ada"))
    assert isinstance(command, VisitorCommand)
    reply = conv.stored(command, Verdict.OK, seq=3, first_bot_seq=4, now_ms=9)
    assert codes(reply)[-1] == "lead" and frames(reply)[-1]["status"] == "completed"
    assert reply.completed


def test_a_recovered_session_says_so() -> None:
    conv = ready(status=SessionStatus.ABANDONED)
    reply = conv.stored(_command(conv), Verdict.OK, seq=3, first_bot_seq=4, recovered=True)
    assert reply.recovered
    assert conv.view is not None and conv.view.status is SessionStatus.OPEN


def test_unavailable_storage_means_no_ack_and_1012() -> None:
    conv = ready()
    reply = conv.unavailable("m1")
    assert codes(reply) == ["unavailable"] and reply.close is CloseCode.SERVICE_RESTART


def test_each_error_has_one_wire_code() -> None:
    assert WIRE_CODES == {
        FrameError: ErrorCode.BAD_FRAME,
        FieldInvalid: ErrorCode.INVALID_FIELD,
        StoreError: ErrorCode.UNAVAILABLE,
    }


# --- the end of a session -------------------------------------------------------


def test_abandonment_is_told_once() -> None:
    conv = ready()
    assert frames(conv.abandoned()) == [{"type": "lead", "status": "abandoned", "session_id": "s1"}]
    assert conv.abandoned().frames == ()


def test_an_open_session_is_never_let_go() -> None:
    assert ready().idle_for() is None


def test_a_finished_quiet_socket_is_let_go_after_the_idle_timeout() -> None:
    clock = Clock()
    conv = ready(clock)
    conv.abandoned()
    assert conv.idle_for() == 60
    clock.now += 61
    remaining = conv.idle_for()
    assert remaining is not None and remaining < 0
    reply = conv.let_go()
    assert reply.close is CloseCode.IDLE and conv.state is ConnState.CLOSING
    assert conv.idle_for() is None


def test_a_visitor_event_restarts_the_quiet_time() -> None:
    clock = Clock()
    conv = ready(clock, status=SessionStatus.COMPLETED)
    clock.now += 30
    conv.stored(_command(conv), Verdict.OK, seq=3, first_bot_seq=4)
    conv.view.status = SessionStatus.COMPLETED  # type: ignore[union-attr]
    assert conv.idle_for() == 60


def test_a_new_session_asks_its_first_question() -> None:
    conv = new_ready()
    prompt = conv.view.prompt() if conv.view else None
    assert prompt is not None and prompt["field"] == "name"


def test_the_view_of_a_completed_session_has_no_prompt() -> None:
    view = SessionView("s1", SITE, 3, SessionStatus.COMPLETED)
    assert view.prompt() is None


def test_parsed_frames_flow_through_the_core() -> None:
    conv = new_ready()
    command = conv.frame(
        parse_client_frame('{"type":"field","id":"a","name":"name","value":"Ada"}')
    )
    assert isinstance(command, VisitorCommand) and command.updates == {"name": "Ada"}
