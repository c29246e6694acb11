"""Chunking invariants: sizes, sentence boundaries, overlap, tables, heading context."""

from __future__ import annotations

import itertools

import pytest

from knowledge.text.chunking import Block, Chunk, Section, chunk_sections, chunk_table, chunk_text

SENTENCES = [f"第{n}句话说明了一件事情{'很' * (n % 7)}重要。" for n in range(40)]
TEXT = "".join(SENTENCES)


def _shared(previous: str, chunk: str) -> int:
    """How many characters `chunk` starts with that `previous` ends with (sentences differ)."""
    return next(n for n in range(len(chunk), -1, -1) if previous.endswith(chunk[:n]))


def _without_overlap(chunks: list[str], overlap_chars: int) -> str:
    """Rejoin chunks, dropping each one's repeat of the previous chunk's end."""
    joined = chunks[0]
    for previous, chunk in itertools.pairwise(chunks):
        shared = _shared(previous, chunk)
        assert shared <= overlap_chars
        joined += chunk[shared:]
    return joined


@pytest.mark.parametrize("max_chars", [40, 80, 150])
@pytest.mark.parametrize("overlap_chars", [0, 20, 39])
def test_no_text_is_lost_or_repeated_beyond_the_overlap(max_chars: int, overlap_chars: int) -> None:
    chunks = chunk_text(TEXT, max_chars, overlap_chars)
    assert all(len(c) <= max_chars for c in chunks)
    assert _without_overlap(chunks, overlap_chars) == TEXT


def test_chunks_end_at_chinese_sentence_boundaries() -> None:
    text = "第一句很短。第二句是问句吗？第三句感叹！第四句用分号；第五句结束。" * 5
    chunks = chunk_text(text, max_chars=30)
    assert len(chunks) > 1
    assert all(c[-1] in "。！？；" for c in chunks)
    assert "".join(chunks) == text


def test_overlap_repeats_whole_sentences_only() -> None:
    chunks = chunk_text(TEXT, max_chars=80, overlap_chars=40)
    for previous, chunk in itertools.pairwise(chunks):
        repeated = chunk[: _shared(previous, chunk)]
        assert 0 < len(repeated) <= 40
        # The repeat is the previous chunk's last sentences, whole: it starts one.
        assert any(repeated.startswith(s) for s in SENTENCES)
        assert repeated.endswith("。")


def test_overlap_never_pushes_a_chunk_past_max_chars() -> None:
    text = "短句一。短句二。短句三。" + "".join(
        f"第{n}个比较长的句子，长到几乎填满一个块。" for n in range(4)
    )
    chunks = chunk_text(text, max_chars=24, overlap_chars=20)
    assert all(len(c) <= 24 for c in chunks)
    assert _without_overlap(chunks, 20) == text


@pytest.mark.parametrize(("max_chars", "overlap_chars"), [(0, 0), (10, 10), (10, -1)])
def test_bad_sizes_are_refused(max_chars: int, overlap_chars: int) -> None:
    with pytest.raises(ValueError, match="_chars"):
        chunk_text("文本。", max_chars, overlap_chars)


TABLE = "部件 | 保修期\n" + "\n".join(f"部件{n} | {n} 年" for n in range(30))


def test_a_table_that_fits_is_one_chunk() -> None:
    small = "部件 | 保修期\n主机 | 2 年\n电源 | 1 年"
    assert chunk_table(small, max_chars=100) == [small]


def test_a_large_table_is_cut_between_rows_with_its_header_repeated() -> None:
    pieces = chunk_table(TABLE, max_chars=60)
    assert len(pieces) > 1
    assert all(len(p) <= 60 for p in pieces)
    assert all(p.startswith("部件 | 保修期\n") for p in pieces)
    rows = [row for p in pieces for row in p.split("\n")[1:]]
    assert rows == TABLE.split("\n")[1:]  # every row once, in order


def test_sections_carry_headings_and_keep_tables_apart_from_text() -> None:
    small_table = "部件 | 保修期\n主机 | 2 年"
    sections = [
        Section(("手册",), (Block("前言。"),)),
        Section(
            ("手册", "保修"),
            (Block("保修如下。"), Block(small_table, table=True, header_rows=1), Block("完。")),
        ),
    ]
    chunks = chunk_sections(sections, source="m.docx", max_chars=100, overlap_chars=10)
    assert chunks == [
        Chunk("前言。", "m.docx", "手册", ("手册",)),
        Chunk("保修如下。", "m.docx", "保修", ("手册", "保修")),
        Chunk(small_table, "m.docx", "保修", ("手册", "保修")),
        Chunk("完。", "m.docx", "保修", ("手册", "保修")),
    ]
    assert chunks[2].context_text == "手册\n保修\n部件 | 保修期\n主机 | 2 年"
