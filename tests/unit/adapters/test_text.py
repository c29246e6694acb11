"""Reply splitting by UTF-8 bytes, and Markdown flattening."""

from __future__ import annotations

import random

import pytest

from adapters.text import markdown_to_plain, split_text


def assert_well_formed(text: str, parts: list[str], max_bytes: int) -> None:
    """Parts fit, are non-empty and trimmed, and appear in order with only whitespace between."""
    position = 0
    for part in parts:
        assert part
        assert part == part.strip()
        assert len(part.encode("utf-8")) <= max_bytes
        found = text.find(part, position)
        assert found >= 0, f"part not found in order: {part[:30]!r}"
        assert text[position:found].strip() == "", "text was dropped between parts"
        position = found + len(part)
    assert text[position:].strip() == ""


def test_short_text_is_one_part() -> None:
    assert split_text("  hello  ", 2048) == ["hello"]


@pytest.mark.parametrize("text", ["", "   ", "\n\n\t"])
def test_blank_text_gives_no_parts(text: str) -> None:
    assert split_text(text, 100) == []


def test_chinese_sentences_split_after_punctuation() -> None:
    sentence = "您好，这是关于订单的说明。"  # 13 chars, 39 bytes
    text = sentence * 10
    parts = split_text(text, 100)
    assert_well_formed(text, parts, 100)
    assert all(part.endswith("。") for part in parts)
    assert len(parts) == 5  # two sentences (78 bytes) per part


def test_prefers_paragraph_breaks() -> None:
    first = "第一段。" * 5
    second = "Second paragraph. " * 3
    text = f"{first}\n\n{second.strip()}"
    parts = split_text(text, len(first.encode()) + 20)
    assert parts[0] == first
    assert_well_formed(text, parts, len(first.encode()) + 20)


def test_ascii_sentence_needs_a_space_after_the_stop() -> None:
    text = "Version 3.14 is out. Upgrade now! " * 20
    parts = split_text(text, 120)
    assert_well_formed(text, parts, 120)
    assert all(part.endswith((".", "!")) for part in parts[:-1])
    assert not any(part.endswith("3.") for part in parts)


def test_closing_quote_stays_with_its_sentence() -> None:
    text = "他说：“好的。”然后走了。" * 10
    parts = split_text(text, 60)
    assert_well_formed(text, parts, 60)
    assert not any(part.startswith("”") for part in parts)


def test_long_text_without_punctuation_cuts_at_characters() -> None:
    text = "无标点长文本" * 500
    parts = split_text(text, 2048)
    assert_well_formed(text, parts, 2048)
    assert "".join(parts) == text
    # 3-byte characters: 682 fit in 2048 bytes, and every cut is whole.
    assert [len(p) for p in parts[:-1]] == [682] * (len(parts) - 1)


def test_never_cuts_inside_a_four_byte_character() -> None:
    text = "😀" * 100
    parts = split_text(text, 10)
    assert all(part == "😀😀" for part in parts)
    assert "".join(parts) == text


def test_english_without_stops_cuts_between_words() -> None:
    text = " ".join(f"word{i}" for i in range(400))
    parts = split_text(text, 100)
    assert_well_formed(text, parts, 100)
    words = set(text.split())
    assert all(set(part.split()) <= words for part in parts)


@pytest.mark.parametrize("seed", range(20))
def test_random_mixed_text_keeps_all_invariants(seed: int) -> None:
    rng = random.Random(seed)
    alphabet = [*"abc 你好世界。！？；…,.!?;\n\n ", "😀", "é", "  ", "\t"]
    text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 3000)))
    max_bytes = rng.choice([4, 5, 17, 64, 300, 2048])
    parts = split_text(text, max_bytes)
    assert_well_formed(text, parts, max_bytes)
    assert "".join("".join(parts).split()) == "".join(text.split())


def test_limit_below_one_character_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 4"):
        split_text("abc", 3)


def test_markdown_is_flattened() -> None:
    markdown = (
        "# 退货政策\n\n"
        "**七天**无理由退货，详见[帮助中心](https://example.com/help)。\n"
        "## Steps\n"
        "- Call `support`\n"
        "- Visit <https://example.com>\n"
        "![logo](https://example.com/l.png) and [https://x.test](https://x.test)\n"
    )
    assert markdown_to_plain(markdown) == (
        "退货政策\n\n"
        "七天无理由退货，详见帮助中心 (https://example.com/help)。\n"
        "Steps\n"
        "- Call support\n"
        "- Visit <https://example.com>\n"
        "logo (https://example.com/l.png) and https://x.test"
    )


def test_code_fences_are_dropped_but_code_is_kept_verbatim() -> None:
    markdown = "Run:\n```bash\necho **not bold** # not a heading\n```\nDone **now**."
    assert markdown_to_plain(markdown) == "Run:\necho **not bold** # not a heading\nDone now."


def test_plain_text_is_untouched() -> None:
    text = "价格是 2*3*4 元，C# 和 a_b_c 保持原样。"
    assert markdown_to_plain(text) == text
