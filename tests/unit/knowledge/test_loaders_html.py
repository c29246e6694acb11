"""HTML loading: visible text only, h1…h6 as section trails, tables whole."""

from __future__ import annotations

from pathlib import Path

from knowledge.loaders import Chunk, load_document

PAGE = """\
<!DOCTYPE html>
<html><head><meta charset="gbk"><title>售后服务</title>
<style>body { color: red }</style><script>var x = "不要索引我";</script></head>
<body>
<nav><a href="/">首页</a> | <a href="/faq">常见问题</a></nav>
<p>欢迎来到&nbsp;售后中心。</p>
<h1>退换货</h1>
<p>签收后 7 天内
   可申请退货。<br>请保留包装。</p>
<h2>运费</h2>
<table>
  <tr><th>情形</th><th>运费</th></tr>
  <tr><td>质量问题</td><td>商家承担</td></tr>
  <tr><td>无理由退货</td><td>买家承担<script>track()</script></td></tr>
</table>
<div>以上为标准政策。</div>
<h1>发票</h1>
<ul><li>电子发票</li><li>纸质发票</li></ul>
<footer>版权所有</footer>
</body></html>
"""


def test_sections_text_and_tables(tmp_path: Path) -> None:
    path = tmp_path / "after_sales.html"
    path.write_bytes(PAGE.encode("gbk"))
    chunks = load_document(path)
    fees = ("退换货", "运费")
    assert chunks == [
        Chunk("欢迎来到 售后中心。", "after_sales.html", "售后服务", ("售后服务",)),
        Chunk(
            "签收后 7 天内 可申请退货。\n请保留包装。", "after_sales.html", "退换货", ("退换货",)
        ),
        Chunk(
            "情形 | 运费\n质量问题 | 商家承担\n无理由退货 | 买家承担",
            "after_sales.html",
            "运费",
            fees,
        ),
        Chunk("以上为标准政策。", "after_sales.html", "运费", fees),
        Chunk("电子发票\n纸质发票", "after_sales.html", "发票", ("发票",)),
    ]
    text = "\n".join(c.text for c in chunks)
    for hidden in ("不要索引我", "首页", "版权所有", "color", "track"):
        assert hidden not in text


def test_broken_markup_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "broken.htm"
    path.write_text("<h3>标题<p>没有闭合的段落。<table><tr><td>单元格", encoding="utf-8")
    chunks = load_document(path)
    assert [(c.headings, c.text) for c in chunks] == [
        (("标题",), "没有闭合的段落。"),
        (("标题",), "单元格"),
    ]


def test_a_missing_head_end_tag_and_an_article_header(tmp_path: Path) -> None:
    path = tmp_path / "article.html"
    path.write_text(
        "<html><head><title>T</title><body><article><header><h1>公告</h1></header>"
        "<p>明天停机维护。</p></article></body>",
        encoding="utf-8",
    )
    assert [(c.headings, c.text) for c in load_document(path)] == [(("公告",), "明天停机维护。")]
