"""The per-answer trace: tool calls paired with their arguments and results, bounded texts,
answer kinds, the JSON round trip, and order data masked for editors."""

from __future__ import annotations

import json

from bot.agent import trace as tracing
from bot.agent.agent import Answer
from bot.agent.toolloop import LoopResult, StepTrace, ToolTrace
from bot.console.pages.turns import MASK, _masked
from knowledge.base import Hit


def _loop() -> LoopResult:
    messages = [
        {"role": "user", "content": "我的订单到哪了"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "lookup_order", "arguments": '{"order_id": "A1"}'},
                },
                {
                    "id": "c2",
                    "type": "function",
                    "function": {"name": "search_knowledge", "arguments": '{"query": "物流"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "c2", "name": "search_knowledge", "content": "物流说明"},
        {"role": "tool", "tool_call_id": "c1", "name": "lookup_order", "content": "x" * 5000},
    ]
    steps = [
        StepTrace(
            "vllm",
            0.25,
            0.1,
            10,
            5,
            (
                ToolTrace("lookup_order", True, "", 0.05),
                ToolTrace("search_knowledge", False, "timeout", 0.05),
            ),
        ),
        StepTrace("vllm", 0.5, 0.0, 20, 8),
    ]
    return LoopResult(text="在路上", backend="vllm", answered=True, steps=steps, messages=messages)


def test_tool_calls_carry_their_arguments_and_results_in_order() -> None:
    hits = [Hit("长文" * 400, "policies.md", "物流", 0.61234, None)]
    found = tracing.of_loop(hits, _loop())
    assert [(t.name, t.arguments, t.ok, t.error, t.ms) for t in found.tools] == [
        ("lookup_order", '{"order_id": "A1"}', True, "", 50),
        ("search_knowledge", '{"query": "物流"}', False, "timeout", 50),
    ]
    assert len(found.tools[0].result) == tracing.RESULT_MAX  # cut, with an ellipsis
    assert found.tools[0].result.endswith("…")
    assert found.tools[1].result == "物流说明"
    assert (found.model_ms, found.steps) == (750, 2)
    (hit,) = found.hits
    assert (hit.score, hit.faq, len(hit.text)) == (0.6123, False, tracing.HIT_TEXT_MAX)


def test_without_a_model_only_the_passages_are_kept() -> None:
    found = tracing.of_loop([Hit("答", "faq.csv", "FAQ", 0.9, "写好的答案")], None)
    assert found.tools == ()
    assert found.hits[0].faq is True


def test_answer_kinds() -> None:
    assert tracing.outcome_of("model", "vllm", False, "user_request") == tracing.HANDOFF
    assert tracing.outcome_of("knowledge", "", True, "") == tracing.KNOWLEDGE
    assert tracing.outcome_of("", "rule", False, "") == tracing.RULE
    assert tracing.outcome_of("", "", True, "") == tracing.DECLINED
    assert tracing.outcome_of("", "human", False, "") == tracing.OTHER


def test_the_trace_survives_the_answer_cache() -> None:
    answer = Answer(text="在路上", outcome=tracing.MODEL, trace=tracing.of_loop([], _loop()))
    again = Answer.from_json(answer.to_json())
    assert again.trace == answer.trace
    assert again.outcome == tracing.MODEL
    assert json.loads(tracing.dumps(answer.trace))["steps"] == 2
    assert Answer.from_json('{"text": "旧缓存"}').trace == tracing.Trace()  # before traces


def test_editors_see_that_an_order_tool_ran_not_the_order() -> None:
    masked = _masked(tracing.of_loop([], _loop()))
    order, search = masked.tools
    assert (order.arguments, order.result, order.ok) == (MASK, MASK, True)
    assert search.arguments == '{"query": "物流"}'
