"""FAQ sheets written back read the same through the loader; questions group by wording."""

from __future__ import annotations

from pathlib import Path

from knowledge.faq_sheet import Entry, to_csv
from knowledge.loaders import load_faq_csv
from knowledge.text.clusters import cluster


def test_a_written_sheet_reads_back_the_same(tmp_path: Path) -> None:
    rows = [
        Entry("运费多少", "满 99 元包邮。", ("运费怎么算", "包|邮吗")),
        Entry("=HYPERLINK()", "答案，含逗号, 和\n换行", ()),
    ]
    path = tmp_path / "faq.csv"
    path.write_bytes(to_csv(rows))
    read = load_faq_csv(path)
    assert [(e.question, e.answer, list(e.similar)) for e in read] == [
        ("运费多少", "满 99 元包邮。", ["运费怎么算", "包/邮吗"]),
        ("'=HYPERLINK()", "答案，含逗号, 和\n换行", []),
    ]


def test_questions_group_by_wording_biggest_first() -> None:
    texts = ["发票怎么开", "运费多少", "运费是多少钱", "怎么开发票", "运费多少？", "你好"]
    groups = [[texts[i] for i in g] for g in cluster(texts)]
    assert groups == [
        ["运费多少", "运费是多少钱", "运费多少？"],
        ["发票怎么开", "怎么开发票"],
        ["你好"],
    ]
