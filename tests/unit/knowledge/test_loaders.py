"""Loading a knowledge folder: sections, chunks, FAQ CSV, encodings, bad files."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import pytest

from knowledge import loaders
from knowledge.loaders import Chunk, FaqEntry, LoadError

MANUAL = """\
前言：本手册适用于 R3。

# R3 手册

## 开机

长按电源键 3 秒开机。

## 常见故障

### 无法联网

请确认路由器是 2.4GHz 网络。

```
# 这不是标题
```
"""

FAQ = """\
question,answer,similar
怎么退货,签收后 7 天内可申请退货。,我要退货|如何申请退货｜我要退货|怎么退货
多久发货,"16:00 前付款当天发货，否则次日发货。",
"""


def _write(folder: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


# -- sections and chunks -------------------------------------------------------------------


def test_headings_split_sections_with_their_trail() -> None:
    sections = loaders.split_sections(MANUAL, title="manual")
    assert [trail for trail, _ in sections] == [
        ("manual",),
        ("R3 手册", "开机"),
        ("R3 手册", "常见故障", "无法联网"),
    ]
    assert sections[1][1] == "长按电源键 3 秒开机。"
    assert "# 这不是标题" in sections[2][1]  # a heading inside a code fence is text


def test_sentences_split_after_chinese_punctuation_and_rejoin_losslessly() -> None:
    text = "第一句。第二句！第三句？第四句；“引号里的话。”最后一段\n下一行"
    sentences = loaders.split_sentences(text)
    assert "".join(sentences) == text
    assert sentences[:4] == ["第一句。", "第二句！", "第三句？", "第四句；"]
    assert sentences[4] == "“引号里的话。”"


def test_chunks_respect_max_chars_and_sentence_boundaries() -> None:
    sentence = "这是一个大约二十个字的句子，用来测试分块。"
    text = sentence * 40
    chunks = loaders.chunk_text(text, max_chars=100)
    assert len(chunks) > 1
    assert all(len(c) <= 100 for c in chunks)
    assert all(c.endswith("。") for c in chunks)
    assert "".join(chunks) == text


def test_an_overlong_sentence_is_cut_at_a_comma_when_possible() -> None:
    text = "，".join(["很长的一段没有句号的话"] * 30)
    chunks = loaders.chunk_text(text, max_chars=50)
    assert all(len(c) <= 50 for c in chunks)
    assert all(c.endswith("，") for c in chunks[:-1])
    assert "".join(chunks) == text


def test_text_without_punctuation_is_cut_hard() -> None:
    chunks = loaders.chunk_text("字" * 250, max_chars=100)
    assert [len(c) for c in chunks] == [100, 100, 50]


# -- FAQ CSV -------------------------------------------------------------------------------


def test_faq_rows_with_similar_questions() -> None:
    entries = loaders.parse_faq_csv(FAQ, source="faq.csv")
    assert entries == [
        FaqEntry(
            question="怎么退货",
            answer="签收后 7 天内可申请退货。",
            source="faq.csv",
            similar=("我要退货", "如何申请退货"),  # deduplicated, full-width ｜ too
        ),
        FaqEntry(
            question="多久发货", answer="16:00 前付款当天发货，否则次日发货。", source="faq.csv"
        ),
    ]
    assert entries[0].questions == ("怎么退货", "我要退货", "如何申请退货")
    assert entries[0].text == "怎么退货\n我要退货\n如何申请退货"


def test_chinese_headers_and_any_column_order() -> None:
    text = "答案,问题\n工作日 9:00 到 21:00。,客服几点上班\n"
    assert loaders.parse_faq_csv(text, "f.csv") == [
        FaqEntry(question="客服几点上班", answer="工作日 9:00 到 21:00。", source="f.csv")
    ]


def test_rows_missing_question_or_answer_are_skipped_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    text = "question,answer\n有问题没答案,\n,有答案没问题\n好问题,好答案\n"
    with caplog.at_level(logging.WARNING, logger="knowledge.loaders"):
        entries = loaders.parse_faq_csv(text, "f.csv")
    assert [e.question for e in entries] == ["好问题"]
    assert "f.csv row 2" in caplog.text
    assert "f.csv row 3" in caplog.text


def test_csv_without_the_required_columns_is_a_load_error() -> None:
    with pytest.raises(LoadError, match="missing answer"):
        loaders.parse_faq_csv("question,reply\n问,答\n", "bad.csv")


# -- encodings -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("发票怎么开".encode(), "发票怎么开"),
        (b"\xef\xbb\xbf" + "发票怎么开".encode(), "发票怎么开"),
        ("发票怎么开".encode("gbk"), "发票怎么开"),
        ("䶮发票".encode("gb18030"), "䶮发票"),  # outside GBK, inside GB18030
        ("发票".encode("utf-16"), "发票"),
        ("一\r\n二\r三".encode(), "一\n二\n三"),
    ],
)
def test_decode_detects_the_encoding(data: bytes, expected: str) -> None:
    assert loaders.decode(data) == expected


@pytest.mark.parametrize("data", [b"\x80\x81\xff\xfe", b"PK\x03\x04\x00\x00binary"])
def test_undecodable_bytes_are_a_load_error(data: bytes) -> None:
    with pytest.raises(LoadError, match=r"x\.md"):
        loaders.decode(data, "x.md")


# -- folders -------------------------------------------------------------------------------


def test_folder_loads_documents_and_faqs(tmp_path: Path) -> None:
    _write(tmp_path, "manual.md", MANUAL)
    _write(tmp_path, "sub/notes.txt", "纯文本说明。第二句。")
    _write(tmp_path, "faq.csv", FAQ)
    _write(tmp_path, "image.png", "not loaded")
    _write(tmp_path, ".hidden/secret.md", "# 不加载")
    result = loaders.load_folder(tmp_path)
    assert result.failed == ()
    assert len(result.faqs) == 2
    assert {c.source for c in result.chunks} == {"manual.md", "sub/notes.txt"}
    assert (
        Chunk(
            text="长按电源键 3 秒开机。",
            source="manual.md",
            section="开机",
            headings=("R3 手册", "开机"),
        )
        in result.chunks
    )
    notes = [c for c in result.chunks if c.source == "sub/notes.txt"]
    assert notes == [
        Chunk(
            text="纯文本说明。第二句。",
            source="sub/notes.txt",
            section="notes",
            headings=("notes",),
        )
    ]


def test_gbk_files_load(tmp_path: Path) -> None:
    _write(tmp_path, "manual.md", MANUAL, encoding="gbk")
    _write(tmp_path, "faq.csv", FAQ, encoding="gbk")
    result = loaders.load_folder(tmp_path)
    assert result.failed == ()
    assert result.faqs[0].question == "怎么退货"
    assert any(c.section == "无法联网" for c in result.chunks)


def test_a_bad_file_is_logged_and_skipped_and_the_others_load(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _write(tmp_path, "a_good.md", MANUAL)
    (tmp_path / "b_corrupt.md").write_bytes(b"\x80\x81\xff\xfe\x00garbage")
    _write(tmp_path, "c_wrong_columns.csv", "title,body\n问,答\n")
    _write(tmp_path, "d_faq.csv", FAQ, encoding="utf-8-sig")
    with caplog.at_level(logging.WARNING, logger="knowledge.loaders"):
        result = loaders.load_folder(tmp_path)
    assert [e.path for e in result.failed] == ["b_corrupt.md", "c_wrong_columns.csv"]
    assert "binary" in result.failed[0].reason
    assert "question,answer" in str(result.failed[1])
    assert len(result.faqs) == 2
    assert {c.source for c in result.chunks} == {"a_good.md"}
    assert "b_corrupt.md" in caplog.text
    assert "c_wrong_columns.csv" in caplog.text


def test_missing_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="knowledge folder"):
        loaders.load_folder(tmp_path / "absent")


def test_load_error_pickles() -> None:
    error = pickle.loads(pickle.dumps(LoadError("f.csv", "bad")))
    assert (error.path, error.reason, str(error)) == ("f.csv", "bad", "f.csv: bad")
