"""Pictures go only to the backends that see them; the others get "[图片]" in their place."""

from __future__ import annotations

from collections.abc import Sequence

from bot.errors import LLMUnavailableError
from bot.llm import images
from bot.llm.base import ChatMessage, Completion, OnDelta, ToolSpec
from bot.llm.breaker import CircuitBreaker
from bot.llm.router import LLMRouter

QUESTION: list[ChatMessage] = [
    {"role": "system", "content": "rules"},
    {
        "role": "user",
        "content": images.with_pictures("这个错误码什么意思？", [b"\xff\xd8\xffjpeg"]),
    },
]


class Recording:
    """Records the messages it was asked with; fails first when told to."""

    def __init__(self, name: str, *, fail: bool = False) -> None:
        self.name = name
        self.fail = fail
        self.asked: list[Sequence[ChatMessage]] = []

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] | None = None,
        timeout_s: float | None = None,
        on_delta: OnDelta | None = None,
    ) -> Completion:
        self.asked.append(messages)
        if self.fail:
            raise LLMUnavailableError("down", platform=self.name)
        return Completion(text="ok", backend=self.name)


def _breakers(name: str) -> CircuitBreaker:
    return CircuitBreaker(failure_threshold=100)


async def test_the_vision_backend_gets_the_picture_and_the_fallback_gets_text() -> None:
    vllm, dashscope = Recording("vllm", fail=True), Recording("dashscope")
    router = LLMRouter([vllm, dashscope], breakers=_breakers, sees_images=["vllm"])
    completion = await router.complete(QUESTION)
    assert completion.backend == "dashscope"
    assert vllm.asked == [QUESTION]
    assert images.has_pictures(vllm.asked[0])
    (blind,) = dashscope.asked
    assert not images.has_pictures(blind)
    assert blind[-1] == {"role": "user", "content": "这个错误码什么意思？\n[图片]"}
    assert blind[0] == QUESTION[0]


async def test_without_a_vision_backend_no_backend_gets_a_picture() -> None:
    vllm = Recording("vllm")
    await LLMRouter([vllm], breakers=_breakers).complete(QUESTION)
    assert not images.has_pictures(vllm.asked[0])
