from datetime import UTC, datetime

from bot.domain import Attachment, Content, InboundMessage, MessageKind, Platform, Reply


def test_inbound_message_json_round_trip() -> None:
    msg = InboundMessage(
        platform=Platform.WECOM,
        app="default",
        event_id="123",
        conversation_id="zhangsan",
        sender_id="zhangsan",
        text="怎么退货",
        is_group=False,
        sent_at=datetime(2026, 11, 23, 8, 0, tzinfo=UTC),
        kind=MessageKind.TEXT,
        route={"agent_id": "1000002"},
    )
    assert InboundMessage.from_json(msg.to_json()) == msg


def test_typed_fields_survive_the_round_trip() -> None:
    msg = InboundMessage(
        platform=Platform.DINGTALK,
        app="default",
        event_id="m1",
        conversation_id="c1",
        sender_id="u1",
        text="[文件] 合同.pdf",
        content=Content.FILE,
        placeholder=True,
        event_key="",
        attachments=(Attachment(Content.FILE, "code1", "合同.pdf", path="/x", size=3),),
    )
    back = InboundMessage.from_json(msg.to_json())
    assert back == msg
    assert back.question == ""  # a placeholder asks nothing in words
    assert InboundMessage.from_json({**msg.to_json(), "content": "hologram"}).content is (
        Content.OTHER
    )


def test_reply_addresses_the_sender() -> None:
    msg = InboundMessage(Platform.WEB, "default", "e1", "c1", "u1", "hi", route={"k": "v"})
    reply = Reply.to(msg, "hello")
    assert (reply.recipient_id, reply.conversation_id, reply.in_reply_to) == ("u1", "c1", "e1")
    assert reply.with_text("part").text == "part"
    assert reply.with_text("part").route == {"k": "v"}


def test_conversation_key_is_unique_per_platform_and_app() -> None:
    a = InboundMessage(Platform.WECOM, "a", "e", "c", "u", "t")
    b = InboundMessage(Platform.WECOM, "b", "e", "c", "u", "t")
    assert a.conversation_key != b.conversation_key
