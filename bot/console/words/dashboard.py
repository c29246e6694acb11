"""Words of the dashboard."""

from __future__ import annotations

ZH: dict[str, str] = {
    "nav.dashboard": "数据看板",
    "dash.period": "统计周期",
    "dash.days": "{n} 天",
    "dash.summary": "概览",
    "dash.answers": "回答数",
    "dash.answer_time": "回答耗时 p50 / p95",
    "dash.handoffs": "转人工",
    "dash.handoff_wait": "人工响应等待 p50 / p95",
    "dash.waiting_now": "正在等待人工",
    "dash.per_day": "每日客户消息（按渠道）",
    "dash.messages": "消息",
    "dash.table": "数据表",
    "dash.day": "日期",
    "dash.outcomes": "回答类型占比",
    "dash.models": "模型调用与 tokens",
    "dash.backend": "模型后端",
    "dash.calls": "调用次数",
    "dash.prompt_tokens": "输入 tokens",
    "dash.completion_tokens": "输出 tokens",
    "dash.no_models": "这段时间没有调用模型。",
}

EN: dict[str, str] = {
    "nav.dashboard": "Dashboard",
    "dash.period": "Period",
    "dash.days": "{n} days",
    "dash.summary": "Summary",
    "dash.answers": "Answers",
    "dash.answer_time": "Time to answer p50 / p95",
    "dash.handoffs": "Handed to a person",
    "dash.handoff_wait": "Wait for a person p50 / p95",
    "dash.waiting_now": "Waiting for a person now",
    "dash.per_day": "Customer messages per day, by channel",
    "dash.messages": "messages",
    "dash.table": "Data table",
    "dash.day": "Day",
    "dash.outcomes": "Answer kinds",
    "dash.models": "Model calls and tokens",
    "dash.backend": "Backend",
    "dash.calls": "Calls",
    "dash.prompt_tokens": "Prompt tokens",
    "dash.completion_tokens": "Completion tokens",
    "dash.no_models": "No model was called in this period.",
}
