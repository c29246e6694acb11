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
    "dash.ratings": "客户评价：有帮助 / 没帮助",
    "dash.up": "有帮助",
    "dash.down": "没帮助",
    "dash.cost": "估算费用",
    "dash.cost_hint": (
        "按 VLLM_PRICE_PER_1K_TOKENS / DASHSCOPE_PRICE_PER_1K_TOKENS"
        "（及 *_PRICE_PER_1K_OUTPUT_TOKENS）配置的单价估算，币种同配置。"
    ),
    "dash.breakers": "模型后端熔断状态",
    "dash.breaker_state": "状态",
    "dash.breaker_since": "状态开始于",
    "dash.breaker_workers": "未闭合 / 上报的 worker",
    "dash.breaker_not_closed": "{n} / {total}",
    "dash.breaker_hint": (
        "每个 worker 进程有自己的熔断器，状态变化时及定期写入 Redis；显示各 worker 中最差的状态。"
    ),
    "breaker.closed": "正常（闭合）",
    "breaker.open": "已熔断（跳过调用）",
    "breaker.half_open": "半开（试探中）",
    "breaker.unknown": "未知（近期没有 worker 上报）",
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
    "dash.ratings": "Customer ratings: helpful / not",
    "dash.up": "helpful",
    "dash.down": "not helpful",
    "dash.cost": "Estimated cost",
    "dash.cost_hint": (
        "At the prices of VLLM_PRICE_PER_1K_TOKENS / DASHSCOPE_PRICE_PER_1K_TOKENS"
        " (and *_PRICE_PER_1K_OUTPUT_TOKENS), in their currency."
    ),
    "dash.breakers": "Model backend breakers",
    "dash.breaker_state": "State",
    "dash.breaker_since": "Since",
    "dash.breaker_workers": "Not closed / workers reporting",
    "dash.breaker_not_closed": "{n} / {total}",
    "dash.breaker_hint": (
        "Each worker process has its own breakers, written to Redis on every change and"
        " periodically. The worst state among the workers is shown."
    ),
    "breaker.closed": "closed (calls go through)",
    "breaker.open": "open (calls skipped)",
    "breaker.half_open": "half-open (probing)",
    "breaker.unknown": "unknown (no worker reported lately)",
}
