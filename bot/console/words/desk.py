"""Words of the workbench's helpers: canned replies and internal notes."""

from __future__ import annotations

ZH: dict[str, str] = {
    "nav.canned": "快捷回复",
    "canned.title": "快捷回复",
    "canned.hint": "人工客服回复时可一键插入的常用语。",
    "canned.name": "名称",
    "canned.text": "内容",
    "canned.add": "新增快捷回复",
    "canned.empty": "还没有快捷回复。",
    "canned.confirm": "确定删除这条快捷回复吗？",
    "canned.invalid": "请填写名称（最多 64 字）和内容（最多 4000 字）。",
    "canned.pick": "快捷回复",
    "canned.none": "选择一条插入…",
    "notes.title": "内部备注",
    "notes.none": "还没有备注。备注只有控制台用户能看到，不会发给客户。",
    "notes.add": "添加内部备注（客户看不到）",
    "notes.save": "保存备注",
    "notice.noted": "备注已保存。",
}

EN: dict[str, str] = {
    "nav.canned": "Canned replies",
    "canned.title": "Canned replies",
    "canned.hint": "Replies agents insert with one click while answering a customer.",
    "canned.name": "Name",
    "canned.text": "Text",
    "canned.add": "New canned reply",
    "canned.empty": "No canned replies yet.",
    "canned.confirm": "Delete this canned reply?",
    "canned.invalid": "A name (up to 64 characters) and a text (up to 4000) are required.",
    "canned.pick": "Canned reply",
    "canned.none": "Choose one to insert…",
    "notes.title": "Internal notes",
    "notes.none": "No notes yet. Notes are seen in the console only, never by the customer.",
    "notes.add": "Add an internal note (the customer does not see it)",
    "notes.save": "Save note",
    "notice.noted": "Note saved.",
}
