"""Auto-reply rules (bot/pipeline/autoreply.py): validation and which rule answers which message."""

from __future__ import annotations

import pickle
import time
from datetime import UTC, datetime

import pytest

from bot.domain import Content, InboundMessage, MessageKind, Platform
from bot.pipeline import autoreply
from bot.pipeline.autoreply import RuleError, choose, parse_rule, parse_rules_text


def _msg(
    text: str,
    platform: Platform = Platform.WECHAT_MP,
    *,
    event: str = "",
    key: str = "",
    msg_type: str = "text",
) -> InboundMessage:
    kind = MessageKind.EVENT if event == "subscribe" else MessageKind.TEXT
    return InboundMessage(
        platform=platform,
        app="default",
        event_id="e1",
        conversation_id="oU",
        sender_id="oU",
        text=text,
        sent_at=datetime.now(UTC),
        kind=kind,
        event=event,
        event_key=key,
        content=Content.of(msg_type),
    )


def _rule(match: str, pattern: str, reply: str, **extra: object) -> autoreply.Rule:
    return parse_rule({"match": match, "pattern": pattern, "reply": reply, **extra})


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"match": "regex", "pattern": "([a-z", "reply": "x"}, "not a valid regular expression"),
        ({"match": "regex", "pattern": r"(a)\1", "reply": "x"}, "backreferences"),
        ({"match": "regex", "pattern": r"退(?=款)", "reply": "x"}, "lookarounds"),
        ({"match": "fuzzy", "pattern": "a", "reply": "x"}, "match must be one of"),
        ({"match": "exact", "pattern": " ", "reply": "x"}, "needs a pattern"),
        ({"match": "exact", "pattern": "a", "reply": ""}, "reply must be"),
        ({"match": "exact", "pattern": "a", "reply": "x" * 2049}, "longer than 2048"),
        ({"match": "exact", "pattern": "a", "reply": "x", "platform": "qq"}, "platform must"),
        ({"match": "exact", "pattern": "a", "reply": "x", "app": "a b"}, "app must"),
        ({"match": "exact", "pattern": "a", "reply": "x", "priority": "1"}, "priority"),
        ({"match": "exact", "pattern": "a", "reply": "x", "colour": 1}, "unknown fields"),
    ],
)
def test_bad_rules_say_why(data: dict, reason: str) -> None:
    with pytest.raises(RuleError, match=reason):
        parse_rule(data)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"match": "regex", "pattern": r"(a)\1", "reply": "x"}, "pattern"),
        ({"match": "exact", "pattern": "a", "reply": " "}, "reply"),
        ({"match": "exact", "pattern": "a", "reply": "x", "priority": 10**10}, "priority"),
        ({"match": "exact", "pattern": "a", "reply": "x", "colour": 1}, ""),
    ],
)
def test_rule_errors_name_the_field_a_form_marks(data: dict, field: str) -> None:
    with pytest.raises(RuleError) as caught:
        parse_rule(data)
    assert caught.value.field == field
    again = pickle.loads(pickle.dumps(caught.value))
    assert (str(again), again.field) == (str(caught.value), field)


def test_exact_contains_and_regex_like_the_console() -> None:
    rules = [
        _rule("contains", "退货", "退货说明"),
        _rule("exact", "你好", "您好！"),
        _rule("regex", r"^订单\s*\d{6,}$", "正在查询订单"),
    ]
    assert choose(rules, _msg(" 你好 "), agent_on=True).reply == "您好！"
    assert choose(rules, _msg("你好呀"), agent_on=True) is None
    assert choose(rules, _msg("我想退货怎么办"), agent_on=True).reply == "退货说明"
    assert choose(rules, _msg("订单 1234567"), agent_on=True).reply == "正在查询订单"
    assert choose(rules, _msg("订单 12"), agent_on=True) is None
    # Exact wins over contains at the same priority; a lower priority number wins first.
    both = [_rule("contains", "你好", "包含"), _rule("exact", "你好", "全匹配")]
    assert choose(both, _msg("你好"), agent_on=True).reply == "全匹配"
    first = [_rule("exact", "你好", "全匹配"), _rule("contains", "你好", "优先", priority=1)]
    assert choose(first, _msg("你好"), agent_on=True).reply == "优先"


def test_scope_by_platform_and_app() -> None:
    rules = [
        _rule("exact", "hi", "mp only", platform="wechat_mp", app="shop"),
        _rule("exact", "hi", "everyone"),
    ]
    assert choose(rules, _msg("hi"), agent_on=True).reply == "everyone"  # app "default"
    mp_shop = InboundMessage(
        platform=Platform.WECHAT_MP,
        app="shop",
        event_id="e",
        conversation_id="c",
        sender_id="s",
        text="hi",
        sent_at=datetime.now(UTC),
    )
    assert choose(rules, mp_shop, agent_on=True).reply == "mp only"
    assert choose(rules[:1], _msg("hi", Platform.WECOM), agent_on=True) is None


def test_events_media_and_defaults() -> None:
    rules = [
        _rule("contains", "V1001", "keyword"),
        _rule("click", "V1001", "营业时间"),
        _rule("subscribe", "", "欢迎关注"),
        _rule("subscribe", "poster", "海报来的朋友你好", priority=1),
        _rule("default", "", "我们稍后回复您"),
        _rule("contains", "图片", "never for media"),
    ]
    # A CLICK carries its key as text: only the click rule answers it.
    assert choose(rules, _msg("V1001", event="CLICK", key="V1001"), agent_on=True).reply == (
        "营业时间"
    )
    assert choose(rules, _msg("", event="subscribe"), agent_on=True).reply == "欢迎关注"
    poster = _msg("", event="subscribe", key="poster")
    assert choose(rules, poster, agent_on=True).reply == "海报来的朋友你好"
    image = _msg("[图片]", msg_type="image")
    assert choose(rules, image, agent_on=False).reply == "我们稍后回复您"
    assert choose(rules[:-1], _msg("[图片]", msg_type="image"), agent_on=True) is None
    # The default reply answers only while the agent is off.
    assert choose(rules, _msg("随便问问"), agent_on=True) is None
    assert choose(rules, _msg("随便问问"), agent_on=False).reply == "我们稍后回复您"


def test_safe_repetition_is_accepted() -> None:
    for pattern in (r"(\d{3})+", r"(退货|退款)+", r"^订单\s*\d{6,}$", r"^(\w+\s?)+$"):
        assert parse_rule({"match": "regex", "pattern": pattern, "reply": "x"}).regex


@pytest.mark.parametrize("pattern", [r"^(a|a)*$", r"(a|aa)+$", r"(.*a){12}$", r"^(\w+\s?)+$"])
def test_patterns_that_backtrack_in_python_match_in_linear_time(pattern: str) -> None:
    # These passed the old screening and froze a worker for 23 s on 29 characters; RE2 has
    # no backtracking. Thousands of characters, far under a second in all.
    rule = _rule("regex", pattern, "x")
    started = time.perf_counter()
    for n in (29, 500, autoreply.MAX_MATCHED_CHARS - 1):
        assert not rule.matches(_msg("a" * n + "!"))
    assert time.perf_counter() - started < 0.5


def test_python_unicode_escapes_still_work() -> None:
    rule = _rule("regex", r"^[\u4e00-\u9fff]+$", "中文")
    assert rule.matches(_msg("退款"))
    assert not rule.matches(_msg("refund"))


def test_rules_file_skips_bad_rules_and_rejects_bad_files() -> None:
    text = """
[[rules]]
match = "exact"
pattern = "你好"
reply = "您好"

[[rules]]
match = "regex"
pattern = "(("
reply = "broken"
"""
    rules = parse_rules_text(text, toml=True)
    assert [(r.key, r.reply) for r in rules] == [("file:1", "您好")]
    with pytest.raises(RuleError, match="rules"):
        parse_rules_text('{"rule": []}', toml=False)
    with pytest.raises(RuleError, match="cannot parse"):
        parse_rules_text("{", toml=False)
