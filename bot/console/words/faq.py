"""Words of the FAQ editor and the unanswered questions."""

from __future__ import annotations

ZH: dict[str, str] = {
    "faq.title": "FAQ 编辑",
    "faq.sheets": "FAQ 表",
    "faq.question": "标准问题",
    "faq.answer": "答案",
    "faq.similar": "相似问法",
    "faq.similar_lines": "相似问法（每行一个）",
    "faq.edit": "编辑",
    "faq.edit_title": "编辑第 {n} 条",
    "faq.add": "新增 FAQ",
    "faq.save": "保存",
    "faq.delete": "删除这条 FAQ",
    "faq.confirm_delete": "确定删除这条 FAQ 吗？",
    "faq.export": "导出 CSV",
    "faq.empty": "这个表还没有 FAQ。",
    "faq.saved": "已保存，正在更新索引，几秒后生效。",
    "faq.required": "请填写标准问题和答案。",
    "faq.changed": "这个 FAQ 表刚被其他人修改过，你的修改没有保存。请返回重新打开后再改。",
    "faq.not_csv": "只能在这里编辑 CSV 格式的 FAQ 表；其他格式请导出 CSV，修改后重新上传。",
    "faq.no_entry": "没有这条 FAQ。",
    "faq.import_hint": (
        "批量导入：在知识库页面上传 CSV/XLSX（列：question, answer, similar），"
        "与 bot kb add 的格式相同。"
    ),
    "faq.unanswered": "未解决的问题",
    "faq.unanswered_period": "最近 {n} 天",
    "faq.unanswered_hint": (
        "机器人无法回答或把握不大的客户问题，按相似问法归组。"
        "把常见的问题加为 FAQ，下次就能直接回答。"
    ),
    "faq.times": "次数",
    "faq.last": "最近一次",
    "faq.make": "加为 FAQ",
    "faq.none_unanswered": "最近没有未解决的问题。",
}

EN: dict[str, str] = {
    "faq.title": "FAQ editor",
    "faq.sheets": "FAQ sheets",
    "faq.question": "Question",
    "faq.answer": "Answer",
    "faq.similar": "Similar questions",
    "faq.similar_lines": "Similar questions (one per line)",
    "faq.edit": "Edit",
    "faq.edit_title": "Edit entry {n}",
    "faq.add": "New FAQ entry",
    "faq.save": "Save",
    "faq.delete": "Delete this entry",
    "faq.confirm_delete": "Delete this FAQ entry?",
    "faq.export": "Export CSV",
    "faq.empty": "This sheet has no entries yet.",
    "faq.saved": "Saved; the index is updated within seconds.",
    "faq.required": "A question and an answer are required.",
    "faq.changed": (
        "Someone else changed this sheet meanwhile; your change was not saved. Open it ag"
        "ain and redo it."
    ),
    "faq.not_csv": (
        "Only CSV sheets are edited here; export other formats as CSV, edit, and upload again."
    ),
    "faq.no_entry": "There is no such entry.",
    "faq.import_hint": (
        "Bulk import: upload a CSV/XLSX sheet (columns question, answer, similar) on the "
        "knowledge base page, the format bot kb add reads."
    ),
    "faq.unanswered": "Unanswered questions",
    "faq.unanswered_period": "last {n} days",
    "faq.unanswered_hint": (
        "Customers' questions the bot declined or answered with little confidence, groupe"
        "d by wording. Add the common ones as FAQ entries."
    ),
    "faq.times": "Times",
    "faq.last": "Last asked",
    "faq.make": "Add as FAQ",
    "faq.none_unanswered": "No unanswered questions lately.",
}
