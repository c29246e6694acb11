"""feishu_post.render: post for Markdown-like answers, text otherwise, @asker in groups."""

from __future__ import annotations

import json

from adapters.feishu.events import post_to_text
from adapters.feishu.post import looks_like_markdown, render


def test_plain_answer_is_text() -> None:
    msg_type, content = render("您好，订单已发货。")
    assert msg_type == "text"
    assert json.loads(content) == {"text": "您好，订单已发货。"}


def test_plain_answer_in_a_group_mentions_the_asker() -> None:
    msg_type, content = render("稍等", at_open_id="ou_lisi")
    assert msg_type == "text"
    assert json.loads(content) == {"text": '<at user_id="ou_lisi"></at> 稍等'}


def test_markdown_answer_is_a_post_with_bold_links_and_lists() -> None:
    answer = (
        "## 退货流程\n\n1. 打开**我的订单**\n- 查看 [退货政策](https://shop.example/r)\n\n完成。"
    )
    msg_type, content = render(answer, at_open_id="ou_lisi")
    assert msg_type == "post"
    body = json.loads(content)["zh_cn"]
    lines = body["content"]
    assert lines[0][:2] == [{"tag": "at", "user_id": "ou_lisi"}, {"tag": "text", "text": " "}]
    assert lines[0][2] == {"tag": "text", "text": "退货流程", "style": ["bold"]}
    assert lines[1] == [{"tag": "text", "text": ""}]  # the blank line between blocks
    assert {"tag": "text", "text": "我的订单", "style": ["bold"]} in lines[2]
    assert lines[3] == [
        {"tag": "text", "text": "• 查看 "},
        {"tag": "a", "text": "退货政策", "href": "https://shop.example/r"},
    ]
    assert lines[-1] == [{"tag": "text", "text": "完成。"}]
    flat = post_to_text(json.loads(content), {"ou_lisi": ""})
    assert flat.splitlines() == [
        "退货流程",
        "",
        "1. 打开我的订单",
        "• 查看 退货政策 (https://shop.example/r)",
        "",
        "完成。",
    ]


def test_bare_url_becomes_a_link_and_fences_are_dropped() -> None:
    msg_type, content = render("见 https://a.example/x\n```\ncode line\n```")
    assert msg_type == "post"
    lines = json.loads(content)["zh_cn"]["content"]
    assert lines[0][1] == {"tag": "a", "text": "https://a.example/x", "href": "https://a.example/x"}
    assert lines[1] == [{"tag": "text", "text": "code line"}]


def test_detection() -> None:
    assert not looks_like_markdown("一句话回答。第二句。")
    assert not looks_like_markdown("第一行\n第二行")
    for marked in (
        "a\n\nb",
        "- 项",
        "3. 项",
        "# 标题",
        "**重点**",
        "[x](https://e.x)",
        "http://e.x",
    ):
        assert looks_like_markdown(marked), marked


def test_quotes_in_the_open_id_cannot_break_the_at_tag() -> None:
    _, content = render("hi", at_open_id='ou_"x')
    assert json.loads(content)["text"] == '<at user_id="ou_x"></at> hi'


def test_a_post_that_would_exceed_30_kb_goes_as_text() -> None:
    many_short_lines = "\n".join(f"- {i}" for i in range(1500))  # ~9 KB of text
    assert len(many_short_lines.encode()) < 12_000
    msg_type, content = render(many_short_lines)
    assert msg_type == "text"
    assert len(content.encode()) < 30_000
    assert json.loads(content)["text"].startswith("- 0\n- 1")
