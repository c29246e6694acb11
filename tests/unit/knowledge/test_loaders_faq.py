"""FAQ sheets: XLSX and JSON lines (CSV is in test_loaders.py), similar questions, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from knowledge.loaders import FaqEntry, LoadError, load_faq, load_file

from .samples import make_xlsx


def test_xlsx_first_sheet_with_chinese_headers_and_similar_questions(tmp_path: Path) -> None:
    path = make_xlsx(
        tmp_path / "faq.xlsx",
        [
            ["编号", "问题", "答案", "相似问题"],
            [1, "怎么退货", "签收后 7 天内可申请退货。", "我要退货|如何退货\n退货流程"],
            [2, "保修多久", 2, None],  # a number typed into Excel
            [3, None, "没有问题的答案", None],
            [None, None, None, None],
        ],
    )
    assert load_faq(path) == [
        FaqEntry(
            "怎么退货",
            "签收后 7 天内可申请退货。",
            "faq.xlsx",
            ("我要退货", "如何退货", "退货流程"),
        ),
        FaqEntry("保修多久", "2", "faq.xlsx"),
    ]


def test_xlsx_without_question_and_answer_columns_is_a_load_error(tmp_path: Path) -> None:
    path = make_xlsx(tmp_path / "faq.xlsx", [["标题", "内容"], ["问", "答"]])
    with pytest.raises(LoadError, match="FAQ XLSX needs a header row"):
        load_faq(path)


def test_a_corrupt_xlsx_is_a_load_error(tmp_path: Path) -> None:
    path = tmp_path / "faq.xlsx"
    path.write_bytes(b"PK\x03\x04 broken zip")
    with pytest.raises(LoadError, match="corrupt XLSX"):
        load_faq(path)


def test_jsonl_with_list_or_string_similar_questions(tmp_path: Path) -> None:
    path = tmp_path / "faq.jsonl"
    records = [
        {"question": "怎么退货", "answer": "签收后 7 天内。", "similar": ["我要退货", "怎么退货"]},
        {"问题": "几点上班", "答案": "9:00。", "相似问题": "客服时间|营业时间"},
        {"question": "没有答案", "answer": ""},
    ]
    path.write_text(
        "\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n\n", encoding="utf-8"
    )
    assert load_file(path).faqs == (
        FaqEntry("怎么退货", "签收后 7 天内。", "faq.jsonl", ("我要退货",)),
        FaqEntry("几点上班", "9:00。", "faq.jsonl", ("客服时间", "营业时间")),
    )


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("{not json", "line 2: invalid JSON"),
        ('["a list"]', "line 2: expected a JSON object"),
        ('{"question": "问", "answer": 3}', "line 2: question and answer must be strings"),
        ('{"question": "问", "answer": "答", "similar": [1]}', "line 2: similar must be"),
    ],
)
def test_a_malformed_jsonl_line_is_a_load_error(tmp_path: Path, line: str, reason: str) -> None:
    path = tmp_path / "faq.jsonl"
    path.write_text('{"question": "好问题", "answer": "好答案"}\n' + line, encoding="utf-8")
    with pytest.raises(LoadError, match=reason):
        load_faq(path)


def test_gbk_csv_loads(tmp_path: Path) -> None:
    path = tmp_path / "faq.csv"
    path.write_bytes("问题,答案,相似问题\n发票怎么开,在订单页申请。,开发票|要发票\n".encode("gbk"))
    assert load_faq(path) == [
        FaqEntry("发票怎么开", "在订单页申请。", "faq.csv", ("开发票", "要发票"))
    ]
