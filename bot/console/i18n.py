"""The console's words in Chinese (the default) and English.

The language is the `bot_console_lang` cookie, set from the switch in the page header;
without it, CONSOLE_LANGUAGE. A key missing from English falls back to Chinese, so a new
page never shows a bare key.
"""

from __future__ import annotations

from collections.abc import Callable

from bot.console.words import bindings as binding_words
from bot.console.words import channels as channel_words
from bot.console.words import conversations as conversation_words
from bot.console.words import dashboard as dashboard_words
from bot.console.words import desk as desk_words
from bot.console.words import faq as faq_words
from bot.console.words import knowledge as knowledge_words
from bot.console.words import rules as rule_words
from bot.console.words import setup_check as setup_check_words
from bot.console.words import synonyms as synonym_words

ZH, EN = "zh-CN", "en"
LANGUAGES = (ZH, EN)
COOKIE = "bot_console_lang"

_ZH: dict[str, str] = {
    "app.title": "客服机器人控制台",
    "nav.inbox": "人工接待",
    "nav.conversations": "会话记录",
    "nav.accounts": "账号",
    "nav.audit": "操作日志",
    "nav.logout": "退出登录",
    "nav.switch": "English",
    "login.title": "登录",
    "login.username": "用户名",
    "login.password": "密码",
    "login.submit": "登录",
    "login.failed": "用户名或密码错误。",
    "login.locked": "登录失败次数过多，请 {minutes} 分钟后再试。",
    "login.expired": "登录已过期，请重新登录。",
    "login.first_admin": (
        "还没有账号？在服务器上运行 bot users add 用户名 --role admin 创建第一个管理员。"
    ),
    "denied.title": "没有权限",
    "denied.text": "您的角色（{role}）不能访问此页面。",
    "csrf.title": "请求已拒绝",
    "csrf.text": "页面已过期或请求不是从本控制台发出的。请返回并刷新页面后重试。",
    "notfound.title": "未找到",
    "notfound.text": "没有这个会话。",
    "role.admin": "管理员",
    "role.editor": "知识编辑",
    "role.agent": "人工客服",
    "inbox.title": "人工接待",
    "inbox.empty": "当前没有等待人工的会话。",
    "inbox.waiting": "等待人工：{count} 个会话",
    "inbox.channel": "渠道",
    "inbox.customer": "客户",
    "inbox.since": "转人工时间",
    "inbox.wait": "已等待",
    "inbox.trigger": "原因",
    "inbox.claimed": "接待人",
    "inbox.unclaimed": "未认领",
    "inbox.open": "打开",
    "inbox.last": "最新消息",
    "trigger.user_request": "客户要求",
    "trigger.model": "模型转交",
    "trigger.low_confidence": "答不上来",
    "trigger.repeat": "重复提问",
    "trigger.anger": "客户不满",
    "trigger.admin": "客服接管",
    "conv.title": "会话 #{id}",
    "conv.state.bot": "机器人接待中",
    "conv.state.human": "人工接待中",
    "conv.claimed_by": "接待人：{agent}",
    "conv.claim": "认领",
    "conv.take_over": "接管会话",
    "conv.release": "结束人工，交还机器人",
    "conv.reply": "回复客户",
    "conv.reply_placeholder": "输入回复，Ctrl+Enter 发送",
    "conv.send": "发送",
    "conv.customer": "客户",
    "conv.updated": "最近活动",
    "conv.none": "还没有会话。",
    "conv.bot": "机器人",
    "conv.human": "人工（{agent}）",
    "conv.events": "转接记录",
    "conv.claim_first": "请先认领此会话再回复。",
    "conv.claimed_by_other": "此会话已由 {agent} 认领。",
    "notice.claimed": "已认领，客户的新消息会显示在这里。",
    "notice.taken_over": "已接管，机器人不再回答此客户。",
    "notice.sent": "已发送。",
    "notice.released": "已交还机器人。",
    "notice.send_failed": "发送失败：{error}",
    "notice.account_added": "账号已创建。",
    "notice.account_disabled": "账号已停用。",
    "notice.account_enabled": "账号已启用。",
    "notice.password_reset": "密码已重置，该账号需重新登录。",
    "accounts.title": "账号",
    "accounts.username": "用户名",
    "accounts.role": "角色",
    "accounts.status": "状态",
    "accounts.active": "正常",
    "accounts.disabled": "已停用",
    "accounts.created": "创建时间",
    "accounts.add": "新建账号",
    "accounts.password": "初始密码（至少 8 位）",
    "accounts.disable": "停用",
    "accounts.enable": "启用",
    "accounts.reset": "重置密码",
    "accounts.new_password": "新密码",
    "audit.title": "操作日志",
    "audit.when": "时间",
    "audit.actor": "操作人",
    "audit.action": "操作",
    "audit.target": "对象",
    "audit.change": "变更",
    "audit.empty": "还没有记录。",
    "time.s": "{n} 秒",
    "time.m": "{n} 分钟",
    "time.h": "{n} 小时",
}

_EN: dict[str, str] = {
    "app.title": "Customer-service bot console",
    "nav.inbox": "Handoff inbox",
    "nav.conversations": "Conversations",
    "nav.accounts": "Accounts",
    "nav.audit": "Audit log",
    "nav.logout": "Sign out",
    "nav.switch": "中文",
    "login.title": "Sign in",
    "login.username": "Username",
    "login.password": "Password",
    "login.submit": "Sign in",
    "login.failed": "Wrong username or password.",
    "login.locked": "Too many failed sign-ins. Try again in {minutes} minutes.",
    "login.expired": "Your session has expired. Please sign in again.",
    "login.first_admin": "No account yet? On the server run: bot users add NAME --role admin",
    "denied.title": "Not allowed",
    "denied.text": "Your role ({role}) cannot open this page.",
    "csrf.title": "Request refused",
    "csrf.text": "The page had expired or the request did not come from this console. "
    "Go back, reload the page and try again.",
    "notfound.title": "Not found",
    "notfound.text": "There is no such conversation.",
    "role.admin": "admin",
    "role.editor": "editor",
    "role.agent": "agent",
    "inbox.title": "Handoff inbox",
    "inbox.empty": "No conversation is waiting for a person.",
    "inbox.waiting": "Waiting for a person: {count}",
    "inbox.channel": "Channel",
    "inbox.customer": "Customer",
    "inbox.since": "Handed off at",
    "inbox.wait": "Waiting",
    "inbox.trigger": "Why",
    "inbox.claimed": "Agent",
    "inbox.unclaimed": "unclaimed",
    "inbox.open": "Open",
    "inbox.last": "Latest message",
    "trigger.user_request": "customer asked",
    "trigger.model": "model handed over",
    "trigger.low_confidence": "no good answer",
    "trigger.repeat": "repeated question",
    "trigger.anger": "customer upset",
    "trigger.admin": "agent took over",
    "conv.title": "Conversation #{id}",
    "conv.state.bot": "the bot is answering",
    "conv.state.human": "a person is answering",
    "conv.claimed_by": "Agent: {agent}",
    "conv.claim": "Claim",
    "conv.take_over": "Take over",
    "conv.release": "Release to the bot",
    "conv.reply": "Reply to the customer",
    "conv.reply_placeholder": "Type a reply, Ctrl+Enter sends",
    "conv.send": "Send",
    "conv.customer": "Customer",
    "conv.updated": "Last activity",
    "conv.none": "No conversations yet.",
    "conv.bot": "Bot",
    "conv.human": "Agent ({agent})",
    "conv.events": "Handoff history",
    "conv.claim_first": "Claim this conversation before replying.",
    "conv.claimed_by_other": "{agent} has claimed this conversation.",
    "notice.claimed": "Claimed: the customer's new messages appear here.",
    "notice.taken_over": "Taken over: the bot no longer answers this customer.",
    "notice.sent": "Sent.",
    "notice.released": "Released to the bot.",
    "notice.send_failed": "Not delivered: {error}",
    "notice.account_added": "Account created.",
    "notice.account_disabled": "Account disabled.",
    "notice.account_enabled": "Account enabled.",
    "notice.password_reset": "Password reset; the account must sign in again.",
    "accounts.title": "Accounts",
    "accounts.username": "Username",
    "accounts.role": "Role",
    "accounts.status": "Status",
    "accounts.active": "active",
    "accounts.disabled": "disabled",
    "accounts.created": "Created",
    "accounts.add": "New account",
    "accounts.password": "Initial password (8+ characters)",
    "accounts.disable": "Disable",
    "accounts.enable": "Enable",
    "accounts.reset": "Reset password",
    "accounts.new_password": "New password",
    "audit.title": "Audit log",
    "audit.when": "When",
    "audit.actor": "Who",
    "audit.action": "What",
    "audit.target": "On",
    "audit.change": "Change",
    "audit.empty": "Nothing recorded yet.",
    "time.s": "{n} s",
    "time.m": "{n} min",
    "time.h": "{n} h",
}

for _words in (
    knowledge_words,
    conversation_words,
    dashboard_words,
    faq_words,
    channel_words,
    desk_words,
    rule_words,
    binding_words,
    setup_check_words,
    synonym_words,
):
    _ZH.update(_words.ZH)
    _EN.update(_words.EN)

_TABLES = {ZH: _ZH, EN: _EN}


def language(cookie: str | None, default: str) -> str:
    if cookie in LANGUAGES:
        return cookie  # type: ignore[return-value]
    return default if default in LANGUAGES else ZH


def translator(lang: str) -> Callable[..., str]:
    """`t(key, **values)` for one language."""
    table = _TABLES.get(lang, _ZH)

    def t(key: str, **values: object) -> str:
        text = table.get(key) or _ZH.get(key) or key
        return text.format(**values) if values else text

    return t


def duration(t: Callable[..., str], seconds: float) -> str:
    """A waiting time in the largest whole unit: 45 秒, 12 分钟, 3 小时."""
    if seconds < 60:
        return t("time.s", n=int(seconds))
    if seconds < 3600:
        return t("time.m", n=int(seconds // 60))
    return t("time.h", n=int(seconds // 3600))
