"""Measure the tool loop's own cost per turn, without the model's time.

Run from the repository root::

    .venv/bin/python -m benchmarks.tool_loop              # 2000 turns per case
    .venv/bin/python -m benchmarks.tool_loop --turns 500

The model is an in-process `LLMClient` that answers instantly from a script (no HTTP, no
tokens to wait for), so what is timed is the loop: building messages, the tool specs,
argument validation (jsonschema), running the tools concurrently with their timeouts,
echoing calls and results, the trace. Cases: 0, 1 and 2 tool steps with `current_time`
(an instant tool), 2 calls in one step, and the whole `Agent.reply` (knowledge
pre-retrieval over the sample knowledge base, prompt, loop, citations) with 1 and 2 steps
of `search_knowledge`, whose time includes the BM25 search itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from bot.agent.agent import Agent
from bot.agent.toolloop import run_loop
from bot.domain import InboundMessage, Platform
from bot.llm.base import ChatMessage, Completion, OnDelta, ToolCall, ToolSpec
from bot.tools.builtin import default_registry
from bot.tools.registry import ToolContext, ToolRegistry
from knowledge.search.retrieval import KeywordRetriever

SAMPLE_KB = Path(__file__).resolve().parents[1] / "examples" / "knowledge"


class InstantModel:
    """Calls the tools in `plan` (one list per step), then answers; no waiting at all."""

    name = "instant"

    def __init__(self, plan: Sequence[Sequence[tuple[str, dict[str, str]]]]) -> None:
        self.plan = plan

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] | None = None,
        timeout_s: float | None = None,  # noqa: ARG002 - instant: nothing to time out
        on_delta: OnDelta | None = None,
    ) -> Completion:
        step = sum(1 for m in messages if m.get("tool_calls"))
        if tools and step < len(self.plan):
            calls = tuple(
                ToolCall(f"c{step}_{i}", name, json.dumps(args, ensure_ascii=False))
                for i, (name, args) in enumerate(self.plan[step])
            )
            return Completion("", calls, self.name, 100, 10)
        text = "您好，发票抬头填错可以在开票后 30 天内申请重开一次。"
        if on_delta is not None:
            await on_delta(text)
        return Completion(text, (), self.name, 100, len(text))


def message(text: str) -> InboundMessage:
    return InboundMessage(Platform.WEB, "default", "e1", "c1", "u1", text)


async def timed(turn: Callable[[], Awaitable[object]], turns: int) -> float:
    for _ in range(min(50, turns)):  # warm up: imports, caches, jsonschema validators
        await turn()
    started = time.perf_counter()
    for _ in range(turns):
        await turn()
    return time.perf_counter() - started


async def run(turns: int) -> list[tuple[str, float]]:
    retriever = KeywordRetriever.from_folder(SAMPLE_KB)
    registry: ToolRegistry = default_registry(retriever)
    clock = [("current_time", {})]
    search = [("search_knowledge", {"query": "发票抬头 重开"})]
    loop_cases: dict[str, list[list[tuple[str, dict[str, str]]]]] = {
        "loop, 0 tool steps": [],
        "loop, 1 tool step": [clock],
        "loop, 2 tool steps": [clock, clock],
        "loop, 1 step of 2 calls": [clock + clock],
    }
    results = []
    messages: list[ChatMessage] = [
        {"role": "system", "content": "你是客服。"},
        {"role": "user", "content": "发票抬头填错了能重开吗"},
    ]
    for label, plan in loop_cases.items():
        model = InstantModel(plan)

        async def loop_turn(model: InstantModel = model) -> object:
            ctx = ToolContext(message("发票抬头填错了能重开吗"))
            return await run_loop(model, messages, registry, ctx)

        results.append((label, await timed(loop_turn, turns)))
    for label, plan in {
        "Agent.reply, 0 tool steps": [],
        "Agent.reply, 1 search step": [search],
        "Agent.reply, 2 search steps": [search, search],
    }.items():
        agent = Agent(InstantModel(plan), retriever, tools=registry, faq_direct_score=1.01)

        async def agent_turn(agent: Agent = agent) -> object:
            return await agent.reply([], message("发票抬头填错了能重开吗"))

        results.append((label, await timed(agent_turn, turns)))
    return results


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--turns", type=int, default=2000)
    args = parser.parse_args(argv)
    print(f"{'case':<30} {'turns/s':>10} {'ms/turn':>9}")
    for label, elapsed in asyncio.run(run(args.turns)):
        print(f"{label:<30} {args.turns / elapsed:>10.0f} {elapsed / args.turns * 1000:>9.3f}")


if __name__ == "__main__":
    main()
