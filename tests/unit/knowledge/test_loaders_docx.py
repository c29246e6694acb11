"""DOCX loading: heading styles as section trails, paragraphs, tables kept whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from knowledge.loaders import Chunk, LoadError, load_document

from .samples import make_docx

TABLE = "部件 | 保修期 | 说明\n主机 | 2 年 | 人为损坏除外\n电源 | 1 年，仅限换新"


def test_headings_paragraphs_and_a_table(tmp_path: Path) -> None:
    chunks = load_document(make_docx(tmp_path / "manual.docx"))
    manual, install, warranty = (
        ("R3 路由器手册",),
        ("R3 路由器手册", "安装"),
        ("R3 路由器手册", "保修"),
    )
    assert chunks == [
        Chunk("封面说明：本文件仅供内部使用。", "manual.docx", "manual", ("manual",)),
        Chunk("本手册介绍 R3 的安装和保修。", "manual.docx", "R3 路由器手册", manual),
        Chunk(
            "第一步，接通电源。第二步，连接网线。\n指示灯变绿后即可上网。",
            "manual.docx",
            "安装",
            install,
        ),
        Chunk("保修政策如下表：", "manual.docx", "保修", warranty),
        # The merged cell appears once; the table is a chunk of its own.
        Chunk(TABLE, "manual.docx", "保修", warranty),
        Chunk("超出保修期的维修需付费。", "manual.docx", "保修", warranty),
    ]


def test_a_table_too_large_for_one_chunk_repeats_its_header(tmp_path: Path) -> None:
    chunks = load_document(make_docx(tmp_path / "manual.docx"), max_chars=31)
    table_chunks = [c.text for c in chunks if " | " in c.text]
    assert table_chunks == [
        "部件 | 保修期 | 说明\n主机 | 2 年 | 人为损坏除外",
        "部件 | 保修期 | 说明\n电源 | 1 年，仅限换新",
    ]


@pytest.mark.parametrize(
    "data", [b"PK\x03\x04 not really a zip", b"\xd0\xcf\x11\xe0 an old binary .doc renamed"]
)
def test_a_corrupt_docx_is_a_load_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "broken.docx"
    path.write_bytes(data)
    with pytest.raises(LoadError, match="corrupt DOCX"):
        load_document(path)
