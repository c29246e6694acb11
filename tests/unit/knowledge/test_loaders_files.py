"""One file at a time and whole folders: dispatch by type, limits, and failures kept apart."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from knowledge.loaders import Chunk, LoadError, load_document, load_faq, load_file, load_folder

from .samples import encrypt_pdf, make_docx, make_pdf, make_xlsx

MARKDOWN_TABLE = """\
# 资费

套餐如下：

| 套餐 | 月费 |
| --- | ---: |
| 基础版 | 9 元 |
| 高级版 | 29 元 |

以上价格含税。
"""


def test_a_gbk_text_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "说明.txt"
    path.write_bytes("开机请长按电源键。\r\n关机同理。".encode("gbk"))
    assert load_document(path) == [
        Chunk("开机请长按电源键。\n关机同理。", "说明.txt", "说明", ("说明",))
    ]


def test_a_markdown_table_is_kept_whole(tmp_path: Path) -> None:
    path = tmp_path / "fees.md"
    path.write_text(MARKDOWN_TABLE, encoding="utf-8")
    assert [c.text for c in load_document(path, max_chars=60)] == [
        "套餐如下：",
        "| 套餐 | 月费 |\n| --- | ---: |\n| 基础版 | 9 元 |\n| 高级版 | 29 元 |",
        "以上价格含税。",
    ]


def test_overlap_reaches_the_loaders(tmp_path: Path) -> None:
    path = tmp_path / "a.md"
    path.write_text("第一句。第二句。第三句。第四句。", encoding="utf-8")
    chunks = load_document(path, max_chars=8, overlap_chars=4)
    assert [c.text for c in chunks] == ["第一句。第二句。", "第二句。第三句。", "第三句。第四句。"]


@pytest.mark.parametrize("name", ["photo.xyz", "archive.zip", "Makefile"])
def test_an_unsupported_file_type_is_a_load_error(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"whatever")
    with pytest.raises(LoadError, match="unsupported file type"):
        load_file(path)


def test_the_unsupported_suffix_is_named(tmp_path: Path) -> None:
    path = tmp_path / "photo.XYZ"
    path.write_bytes(b"")
    with pytest.raises(LoadError, match=r"unsupported file type \.xyz"):
        load_file(path)


def test_a_file_over_the_size_limit_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "big.md"
    path.write_text("大" * 100, encoding="utf-8")  # 300 bytes
    with pytest.raises(LoadError, match="too large: 300 bytes"):
        load_file(path, max_file_bytes=299)
    assert len(load_file(path, max_file_bytes=300).chunks) == 1


def test_documents_and_faq_sheets_are_not_mixed_up(tmp_path: Path) -> None:
    csv = tmp_path / "faq.csv"
    csv.write_text("question,answer\n问,答\n", encoding="utf-8")
    md = tmp_path / "a.md"
    md.write_text("正文。", encoding="utf-8")
    with pytest.raises(LoadError, match="FAQ sheet, not a document"):
        load_document(csv)
    with pytest.raises(LoadError, match="document, not an FAQ sheet"):
        load_faq(md)
    assert len(load_file(csv).faqs) == 1
    assert len(load_file(md).chunks) == 1


def test_a_folder_of_every_type_with_bad_files_among_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs/guide.pdf").write_bytes(make_pdf([["Guide text."]]))
    (tmp_path / "docs/locked.pdf").write_bytes(
        encrypt_pdf(make_pdf([["Secret."]]), user_password="pw", owner_password="owner")
    )
    (tmp_path / "docs/scan.pdf").write_bytes(make_pdf([[]]))
    (tmp_path / "docs/broken.pdf").write_bytes(b"\x00\x01 not a pdf" * 10)
    make_docx(tmp_path / "docs/manual.docx")
    (tmp_path / "docs/page.html").write_text("<h1>页面</h1><p>网页正文。</p>", encoding="utf-8")
    (tmp_path / "docs/huge.md").write_text("长" * 20_000, encoding="utf-8")
    (tmp_path / "docs/old.txt").write_bytes("旧文档。".encode("gbk"))
    make_xlsx(tmp_path / "faq.xlsx", [["question", "answer"], ["表格问题", "表格答案"]])
    (tmp_path / "faq.jsonl").write_text('{"question": "行问题", "answer": "行答案"}', "utf-8")
    (tmp_path / "faq.csv").write_bytes("问题,答案\n编码问题,GBK 答案\n".encode("gbk"))
    (tmp_path / "bad.jsonl").write_text("{oops", encoding="utf-8")
    (tmp_path / "notes.xyz").write_text("not knowledge", encoding="utf-8")

    with caplog.at_level(logging.WARNING, logger="knowledge.loaders"):
        result = load_folder(tmp_path, max_file_bytes=50_000)

    failed = {error.path: error.reason for error in result.failed}
    assert list(failed) == [
        "bad.jsonl",
        "docs/broken.pdf",
        "docs/huge.md",
        "docs/locked.pdf",
        "docs/scan.pdf",
    ]
    assert "invalid JSON" in failed["bad.jsonl"]
    assert failed["docs/broken.pdf"].startswith("corrupt PDF")
    assert failed["docs/huge.md"].startswith("too large")
    assert failed["docs/locked.pdf"].startswith("encrypted PDF")
    assert failed["docs/scan.pdf"].startswith("no text layer")
    for name in failed:
        assert name in caplog.text
    # Everything else loaded, with sources relative to the folder.
    assert {c.source for c in result.chunks} == {
        "docs/guide.pdf",
        "docs/manual.docx",
        "docs/page.html",
        "docs/old.txt",
    }
    assert [f.question for f in result.faqs] == ["编码问题", "行问题", "表格问题"]
    assert Chunk("网页正文。", "docs/page.html", "页面", ("页面",)) in result.chunks
    assert Chunk("旧文档。", "docs/old.txt", "old", ("old",)) in result.chunks
