"""Words of the synonyms page (bot/console/pages/synonyms.py); `syn.err.*` are the reasons
of `knowledge.synonym_table.SynonymError`, with the same values."""

from __future__ import annotations

ZH: dict[str, str] = {
    "syn.title": "同义词",
    "syn.hint": (
        "客户对产品的叫法（昵称、简称）和文档里的标准说法对应起来，例如 扫地机 = 扫地机器人。"
        "所有知识库共用，保存后几秒内生效，不需要重建索引。常见的通用说法（如何/怎么 等）已内置。"
    ),
    "syn.variant": "客户的说法",
    "syn.standard": "文档里的标准说法",
    "syn.add": "添加",
    "syn.remove": "删除",
    "syn.confirm_remove": "确定删除“{variant}”吗？",
    "syn.empty": "还没有自定义同义词。",
    "syn.added": "已添加，几秒后生效。",
    "syn.removed": "已删除，几秒后生效。",
    "syn.bulk_hint": "批量导入：bot kb synonyms add --file 文件（每行一个 变体=标准词）。",
    "syn.err.empty": "请填写客户的说法和标准说法。",
    "syn.err.too_long": "“{word}”超过 {n} 个字。",
    "syn.err.not_one_word": "“{word}”含有空格、换行或等号：每边只填一个词。",
    "syn.err.same": "“{variant}”和“{standard}”是同一个词（内置词表可能已经对应）。",
    "syn.err.already": "“{variant}”已经对应“{standard}”，请先删除再改。",
    "syn.err.chain": "“{word}”本身是“{standard}”的说法，请直接填“{standard}”。",
    "syn.err.is_standard": "“{variant}”已是其他说法的标准说法，不能再作为说法。",
    "syn.err.too_many": "最多 {n} 条。",
    "syn.err.bad_line": "第 {n} 行：请写成 变体=标准词。",
}

EN: dict[str, str] = {
    "syn.title": "Synonyms",
    "syn.hint": (
        "Map what customers call a product (nicknames, short names) to the word your documents "
        "use, e.g. 扫地机 = 扫地机器人. One list for every knowledge base; it applies within "
        "seconds, no reindex. General wording (如何/怎么 …) is built in."
    ),
    "syn.variant": "Customers say",
    "syn.standard": "Documents say",
    "syn.add": "Add",
    "syn.remove": "Remove",
    "syn.confirm_remove": "Remove “{variant}”?",
    "syn.empty": "No synonyms of your own yet.",
    "syn.added": "Added; it applies within seconds.",
    "syn.removed": "Removed; it applies within seconds.",
    "syn.bulk_hint": "Bulk import: bot kb synonyms add --file FILE (one variant=standard a line).",
    "syn.err.empty": "Fill in both what customers say and the standard word.",
    "syn.err.too_long": "“{word}” is longer than {n} characters.",
    "syn.err.not_one_word": "“{word}” holds a space, line break or '=': one word each.",
    "syn.err.same": (
        "“{variant}” and “{standard}” are the same word (the built-in list may already map them)."
    ),
    "syn.err.already": "“{variant}” already maps to “{standard}”; remove it first.",
    "syn.err.chain": "“{word}” is itself a variant of “{standard}”; use “{standard}”.",
    "syn.err.is_standard": "“{variant}” is the standard word of other variants.",
    "syn.err.too_many": "At most {n} pairs.",
    "syn.err.bad_line": "Line {n}: write variant=standard word.",
}
