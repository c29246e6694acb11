"""Words of the auto-reply rules page."""

from __future__ import annotations

ZH: dict[str, str] = {
    "nav.rules": "自动回复",
    "rules.title": "自动回复规则",
    "rules.hint": (
        "规则先于机器人生效：客户消息匹配到规则时，直接发送规则的固定回复。多条规则都匹配时，"
        "优先级数字小的先，其次按 全匹配、菜单点击、关注、包含、正则、默认 的顺序。"
        "保存后各工作进程从下一条消息起使用新规则。"
    ),
    "rules.match": "匹配方式",
    "rules.match.exact": "全匹配",
    "rules.match.contains": "包含关键词",
    "rules.match.regex": "正则表达式",
    "rules.match.click": "菜单点击（公众号）",
    "rules.match.subscribe": "关注（公众号）",
    "rules.match.default": "默认回复（未配置模型时）",
    "rules.pattern": "匹配内容",
    "rules.pattern_hint": (
        "全匹配和包含不区分大小写；正则使用 RE2 语法（不支持 \\1 这样的反向引用和 (?=…) 这样的"
        "环视）；菜单点击填菜单的 key；关注可填二维码场景值，留空表示所有关注。"
    ),
    "rules.reply": "回复内容",
    "rules.platform": "渠道",
    "rules.any_platform": "全部渠道",
    "rules.any_app": "全部应用",
    "rules.app": "应用（* 表示全部）",
    "rules.try_app": "应用",
    "rules.scope": "渠道 / 应用",
    "rules.priority": "优先级（数字小的先匹配）",
    "rules.priority_short": "优先级",
    "rules.state": "状态",
    "rules.actions": "操作",
    "rules.on": "启用",
    "rules.off": "已停用",
    "rules.enable": "启用",
    "rules.disable": "停用",
    "rules.edit": "编辑",
    "rules.delete": "删除",
    "rules.confirm_delete": "确定删除规则 #{id} 吗？",
    "rules.add": "新增规则",
    "rules.save": "保存",
    "rules.edit_title": "编辑规则 #{id}",
    "rules.db_title": "规则",
    "rules.empty": "还没有规则。",
    "rules.file_title": "规则文件中的规则（只读）",
    "rules.file_hint": (
        "来自 BOT_AUTOREPLY_FILE（{path}）。要修改请编辑这个文件，保存后自动重新加载。"
    ),
    "rules.file_empty": "规则文件中没有可用的规则（无法解析的规则会记在日志中）。",
    "rules.no_file": "未配置规则文件（BOT_AUTOREPLY_FILE），所有规则都在上面。",
    "rules.file_name": "文件第 {n} 条",
    "rules.read_only": "只读",
    "rules.try_title": "试一试",
    "rules.try_text": "客户消息",
    "rules.try_submit": "试一试",
    "rules.try_hit": "会回答的规则：",
    "rules.try_miss": "没有规则匹配：这条消息交给机器人（知识库和模型）回答。",
    "rules.added": "规则已添加，各工作进程从下一条消息起使用。",
    "rules.saved": "规则已保存。",
    "rules.enabled": "规则已启用。",
    "rules.disabled": "规则已停用，不再回答客户。",
    "rules.deleted": "规则已删除。",
    "rules.no_rule": "没有这条规则（可能已被删除）。",
    "rules.not_saved": "规则没有保存，请修改标出的内容。",
    "rules.bad": "{what}：{reason}",
    "rules.bad.rule": "规则无效",
    "rules.bad.match": "匹配方式有误",
    "rules.bad.pattern": "匹配内容有误",
    "rules.bad.reply": "回复内容有误",
    "rules.bad.platform": "渠道有误",
    "rules.bad.app": "应用有误",
    "rules.bad.priority": "优先级有误",
}

EN: dict[str, str] = {
    "nav.rules": "Auto-replies",
    "rules.title": "Auto-reply rules",
    "rules.hint": (
        "Rules answer before the bot: a customer message that matches a rule gets the rule's "
        "fixed reply. When several match, the lower priority number wins, then exact, menu "
        "click, subscribe, contains, regex, default. Workers use a change from their next "
        "message on."
    ),
    "rules.match": "Match",
    "rules.match.exact": "exact",
    "rules.match.contains": "contains keyword",
    "rules.match.regex": "regular expression",
    "rules.match.click": "menu click (Official Account)",
    "rules.match.subscribe": "subscribe (Official Account)",
    "rules.match.default": "default (while no model is configured)",
    "rules.pattern": "Pattern",
    "rules.pattern_hint": (
        "Exact and contains ignore case; regular expressions are RE2 (no backreferences such "
        "as \\1, no lookarounds such as (?=…)); a menu click takes the menu key; subscribe may "
        "take a QR scene, empty for every subscription."
    ),
    "rules.reply": "Reply",
    "rules.platform": "Channel",
    "rules.any_platform": "all channels",
    "rules.any_app": "all apps",
    "rules.app": "App (* for all)",
    "rules.try_app": "App",
    "rules.scope": "Channel / app",
    "rules.priority": "Priority (lower matches first)",
    "rules.priority_short": "Priority",
    "rules.state": "State",
    "rules.actions": "Actions",
    "rules.on": "on",
    "rules.off": "off",
    "rules.enable": "Enable",
    "rules.disable": "Disable",
    "rules.edit": "Edit",
    "rules.delete": "Delete",
    "rules.confirm_delete": "Delete rule #{id}?",
    "rules.add": "New rule",
    "rules.save": "Save",
    "rules.edit_title": "Edit rule #{id}",
    "rules.db_title": "Rules",
    "rules.empty": "No rules yet.",
    "rules.file_title": "Rules from the rules file (read-only)",
    "rules.file_hint": (
        "From BOT_AUTOREPLY_FILE ({path}). Edit that file to change them; it is reloaded when "
        "saved."
    ),
    "rules.file_empty": "The rules file has no usable rule (rules that cannot be read are logged).",
    "rules.no_file": "No rules file (BOT_AUTOREPLY_FILE) is configured: every rule is above.",
    "rules.file_name": "file rule {n}",
    "rules.read_only": "read-only",
    "rules.try_title": "Try it",
    "rules.try_text": "Customer message",
    "rules.try_submit": "Try",
    "rules.try_hit": "Answered by rule",
    "rules.try_miss": "No rule matches: the bot (knowledge and model) answers this message.",
    "rules.added": "Rule added; workers use it from their next message.",
    "rules.saved": "Rule saved.",
    "rules.enabled": "Rule enabled.",
    "rules.disabled": "Rule disabled: it no longer answers customers.",
    "rules.deleted": "Rule deleted.",
    "rules.no_rule": "There is no such rule (it may have been deleted).",
    "rules.not_saved": "The rule was not saved: correct the marked field.",
    "rules.bad": "{what}: {reason}",
    "rules.bad.rule": "Invalid rule",
    "rules.bad.match": "Match",
    "rules.bad.pattern": "Pattern",
    "rules.bad.reply": "Reply",
    "rules.bad.platform": "Channel",
    "rules.bad.app": "App",
    "rules.bad.priority": "Priority",
}
