"""DashScope's multimodal models (DASHSCOPE_VISION_MODEL, e.g. qwen-vl-max) as a vision backend.

The fake DashScope serves both the text and the multimodal endpoint over real HTTP, in the
wire format the `dashscope` SDK speaks, and records what each received: tests assert the
picture bytes, the prompt and the model that reached it, and how 429, 5xx, timeouts and
streaming behave, through the router the settings build (breakers and fallback included).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.domain import STREAM_RESTART
from bot.errors import LLMRejectedError, LLMUnavailableError
from bot.llm import breaker, images
from bot.llm.base import ChatMessage, ToolSpec
from bot.llm.dashscope import DashScopeClient
from bot.llm.factory import build_router
from bot.settings import Settings
from tests.fakes.base import serve
from tests.fakes.dashscope_server import (
    BASE_PATH,
    GENERATION_PATH,
    MULTIMODAL_PATH,
    dashscope_app,
    pictures_received,
)
from tests.fakes.openai_server import (
    FakeToolCall,
    LLMFakeState,
    ScriptedReply,
    openai_app,
    pictures_sent,
)
from tests.integration.pictures import error_code_picture

KEY = "sk-vision-test"
VISION_MODEL = "qwen-vl-max"
QUESTION = "这个错误码什么意思？"
TOOLS: list[ToolSpec] = [
    {
        "type": "function",
        "function": {
            "name": "search_knowledge",
            "description": "Search the knowledge base.",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
        },
    }
]


@dataclass
class Fake:
    url: str
    state: LLMFakeState


@pytest.fixture
def dashscope() -> Iterator[Fake]:
    state = LLMFakeState(model="qwen-plus", api_key=KEY, vision_model=VISION_MODEL)
    with serve(dashscope_app(state)) as url:
        yield Fake(url, state)
    breaker.reset_all()


@pytest.fixture
def vllm() -> Iterator[Fake]:
    state = LLMFakeState(model="qwen2.5-vl-7b", vision=True)
    with serve(openai_app(state)) as url:
        yield Fake(url, state)


@pytest.fixture(scope="module")
def jpeg() -> bytes:
    return images.downscale(error_code_picture("E-1024", size=(800, 400)), max_side=640)


def _asked(jpeg: bytes, text: str = QUESTION) -> list[ChatMessage]:
    return [
        {"role": "system", "content": "你是客服。"},
        {"role": "user", "content": "你好"},
        {"role": "assistant", "content": "您好，请问有什么可以帮您？"},
        {"role": "user", "content": images.with_pictures(text, [jpeg])},
    ]


def _settings(ds: Fake, vllm: Fake | None = None, **dashscope: Any) -> Settings:
    sections: dict[str, Any] = {
        "dashscope": {
            "api_key": KEY,
            "model": ds.state.model,
            "base_url": f"{ds.url}{BASE_PATH}",
            "timeout_s": 3,
            "vision_model": VISION_MODEL,
            **dashscope,
        }
    }
    if vllm is not None:
        sections["vllm"] = {
            "base_url": f"{vllm.url}/v1",
            "model": vllm.state.model,
            "vision": True,
            "timeout_s": 3,
        }
    return Settings.load(None, **sections)


async def test_a_picture_is_answered_by_the_dashscope_vision_model(
    dashscope: Fake, jpeg: bytes
) -> None:
    settings = _settings(dashscope)
    assert settings.vision_backends() == ("dashscope",)
    router = build_router(settings)
    assert router is not None
    dashscope.state.script("图中错误码 E-1024 表示退货申请未通过。")

    completion = await router.complete(_asked(jpeg), tools=TOOLS)

    assert completion.text == "图中错误码 E-1024 表示退货申请未通过。"
    assert completion.backend == "dashscope"
    assert dashscope.state.matching(GENERATION_PATH) == []
    (sent,) = dashscope.state.matching(MULTIMODAL_PATH)
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    body = sent.json
    assert body["model"] == VISION_MODEL
    assert body["parameters"]["result_format"] == "message"
    assert body["parameters"]["tools"] == TOOLS
    messages = body["input"]["messages"]
    assert messages[0] == {"role": "system", "content": [{"text": "你是客服。"}]}
    assert messages[1] == {"role": "user", "content": [{"text": "你好"}]}
    assert messages[2] == {"role": "assistant", "content": "您好，请问有什么可以帮您？"}
    assert messages[3]["content"][0] == {"text": QUESTION}
    assert messages[3]["content"][1]["image"].startswith("data:image/jpeg;base64,")
    assert pictures_received(messages) == [jpeg]  # the very bytes, not a copy re-encoded
    # The fake counts a token a character of text (pictures are free there).
    assert completion.prompt_tokens == len("你是客服。你好您好，请问有什么可以帮您？" + QUESTION)

    # A question without a picture goes to the text model, as before.
    await router.complete([{"role": "user", "content": "运费多少？"}])
    (text,) = dashscope.state.matching(GENERATION_PATH)
    assert text.json["model"] == "qwen-plus"
    assert text.json["input"]["messages"] == [{"role": "user", "content": "运费多少？"}]


async def test_vllm_vision_down_the_dashscope_vision_model_answers_with_the_picture(
    dashscope: Fake, vllm: Fake, jpeg: bytes
) -> None:
    settings = _settings(dashscope, vllm)
    assert settings.vision_backends() == ("vllm", "dashscope")
    router = build_router(settings)
    assert router is not None
    vllm.state.fail_next(1, status=503)

    completion = await router.complete(_asked(jpeg))

    assert completion.backend == "dashscope"
    (asked_vllm,) = vllm.state.matching("/chat/completions")
    assert pictures_sent(asked_vllm.json["messages"]) == [jpeg]
    (sent,) = dashscope.state.matching(MULTIMODAL_PATH)
    assert pictures_received(sent.json["input"]["messages"]) == [jpeg]
    assert completion.text == f"ANSWER: {QUESTION}"  # the fake echoes the question's text


async def test_without_a_dashscope_vision_model_the_fallback_gets_text_for_the_picture(
    dashscope: Fake, vllm: Fake, jpeg: bytes
) -> None:
    router = build_router(_settings(dashscope, vllm, vision_model=""))
    assert router is not None
    vllm.state.fail_next(1, status=503)
    completion = await router.complete(_asked(jpeg))
    assert completion.backend == "dashscope"
    assert dashscope.state.matching(MULTIMODAL_PATH) == []
    (sent,) = dashscope.state.matching(GENERATION_PATH)
    assert sent.json["input"]["messages"][-1]["content"] == f"{QUESTION}\n{images.PICTURE_TEXT}"


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_throttling_and_server_errors_are_unavailable_and_counted(
    dashscope: Fake, jpeg: bytes, status: int
) -> None:
    breaker.reset_all()
    router = build_router(_settings(dashscope))
    assert router is not None
    dashscope.state.fail_next(3, status=status)
    for _ in range(3):
        with pytest.raises(LLMUnavailableError):
            await router.complete(_asked(jpeg))
    assert len(dashscope.state.matching(MULTIMODAL_PATH)) == 3
    # Three failures in a row open DashScope's breaker: the next call costs no round trip.
    assert breaker.breaker_for("dashscope").state is breaker.BreakerState.OPEN
    with pytest.raises(LLMUnavailableError):
        await router.complete(_asked(jpeg))
    assert len(dashscope.state.matching(MULTIMODAL_PATH)) == 3


async def test_a_slow_vision_model_times_out_within_the_budget(
    dashscope: Fake, jpeg: bytes
) -> None:
    dashscope.state.delay_s = 3
    client = DashScopeClient(
        api_key=KEY,
        base_url=f"{dashscope.url}{BASE_PATH}",
        vision_model=VISION_MODEL,
        timeout_s=0.5,
    )
    started = time.monotonic()
    with pytest.raises(LLMUnavailableError, match="timed out"):
        await client.complete(_asked(jpeg))
    assert time.monotonic() - started < 1.5


async def test_an_unknown_vision_model_is_rejected(dashscope: Fake, jpeg: bytes) -> None:
    client = DashScopeClient(
        api_key=KEY, base_url=f"{dashscope.url}{BASE_PATH}", vision_model="qwen-vl-nope"
    )
    with pytest.raises(LLMRejectedError) as info:
        await client.complete(_asked(jpeg))
    assert info.value.status == 400


async def test_the_vision_model_streams_and_a_mid_stream_error_restarts_on_the_fallback(
    dashscope: Fake, vllm: Fake, jpeg: bytes
) -> None:
    answer = "图中错误码表示退货申请未通过。"
    dashscope.state.script(answer)
    dashscope.state.chunk_chars = 3
    shown: list[str] = []

    async def on_delta(piece: str) -> None:
        shown.append(piece)

    client = DashScopeClient(
        api_key=KEY, base_url=f"{dashscope.url}{BASE_PATH}", vision_model=VISION_MODEL
    )
    completion = await client.complete(_asked(jpeg), on_delta=on_delta)
    assert shown == [answer[i : i + 3] for i in range(0, len(answer), 3)]
    assert completion.text == answer
    (sent,) = dashscope.state.matching(MULTIMODAL_PATH)
    assert sent.headers["x-dashscope-sse"] == "enable"
    assert sent.json["parameters"]["incremental_output"] is True
    assert pictures_received(sent.json["input"]["messages"]) == [jpeg]

    # vLLM first: its stream dies after two chunks; the consumer is told to start over and
    # then sees DashScope's answer alone.
    router = build_router(_settings(dashscope, vllm))
    assert router is not None
    vllm.state.script("半句话" * 5)
    vllm.state.drop_after_chunks = 2
    dashscope.state.script(answer)
    shown.clear()
    completion = await router.complete(_asked(jpeg), on_delta=on_delta)
    assert completion.backend == "dashscope"
    restart = shown.index(STREAM_RESTART)
    assert restart > 0
    assert "".join(shown[restart + 1 :]) == answer


async def test_tool_calls_and_results_go_through_the_vision_model(
    dashscope: Fake, jpeg: bytes
) -> None:
    dashscope.state.script(
        ScriptedReply(tool_calls=(FakeToolCall("search_knowledge", {"query": "E-1024"}),))
    )
    client = DashScopeClient(
        api_key=KEY, base_url=f"{dashscope.url}{BASE_PATH}", vision_model=VISION_MODEL
    )
    first = await client.complete(_asked(jpeg), tools=TOOLS)
    (call,) = first.tool_calls
    assert call.name == "search_knowledge"
    follow_up = [
        *_asked(jpeg),
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": "E-1024：退货申请未通过"},
    ]
    await client.complete(follow_up, tools=TOOLS)
    second = dashscope.state.matching(MULTIMODAL_PATH)[1].json["input"]["messages"]
    assert second[-2]["content"] == ""
    assert second[-1] == {
        "role": "tool",
        "tool_call_id": call.id,
        "content": "E-1024：退货申请未通过",
    }
    assert pictures_received(second) == [jpeg]


async def test_without_vision_tools_the_model_is_asked_without_tools(
    dashscope: Fake, jpeg: bytes
) -> None:
    router = build_router(_settings(dashscope, vision_tools=False))
    assert router is not None
    await router.complete(_asked(jpeg), tools=TOOLS)
    (sent,) = dashscope.state.matching(MULTIMODAL_PATH)
    assert "tools" not in sent.json["parameters"]


async def test_a_message_naming_a_file_on_this_host_is_sent_as_text_not_uploaded(
    dashscope: Fake, jpeg: bytes, tmp_path: Path
) -> None:
    # The SDK would upload a local file named by a message item (and send its URL instead);
    # pytest-socket would also refuse the upload's call to DashScope's real OSS.
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the model")
    client = DashScopeClient(
        api_key=KEY, base_url=f"{dashscope.url}{BASE_PATH}", vision_model=VISION_MODEL
    )
    await client.complete(_asked(jpeg, text=str(secret)))
    (sent,) = dashscope.state.matching(MULTIMODAL_PATH)
    assert sent.json["input"]["messages"][-1]["content"][0] == {"text": str(secret)}
    assert "x-dashscope-ossresourceresolve" not in sent.headers


def test_a_vision_model_without_a_key_is_a_config_error() -> None:
    from bot.errors import ConfigError

    with pytest.raises(ConfigError, match="DASHSCOPE_API_KEY"):
        Settings.load(None, dashscope={"vision_model": VISION_MODEL})
