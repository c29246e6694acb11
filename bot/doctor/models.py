"""Model endpoints: reachable and accepting one tiny chat request with one tool; the
embedding endpoint's dimension against the vectors already stored."""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from sqlalchemy.engine import Engine

from bot.doctor.result import Result, fail, ok, skip
from bot.errors import BotError, LLMRejectedError
from bot.llm import images
from bot.llm.base import LLMClient
from bot.llm.factory import model_clients
from bot.settings import Settings
from knowledge.embedding import make_embedder
from knowledge.models import ChunkVector

TIMEOUT_S = 10.0
_TOOL = {
    "type": "function",
    "function": {
        "name": "ping",
        "description": "Answers pong.",
        "parameters": {"type": "object", "properties": {}},
    },
}
VLLM_TOOL_FLAGS = "--enable-auto-tool-choice --tool-call-parser hermes"


def backends(settings: Settings) -> list[LLMClient]:
    """A client per configured model backend, each its own (no fallback between them)."""
    return model_clients(settings, timeout_s=TIMEOUT_S)


async def check_model(client: LLMClient) -> Result:
    name = f"model {client.name}"
    where = getattr(client, "base_url", "") or "its default URL"
    messages = [{"role": "user", "content": "ping"}]
    try:
        await client.complete(messages, tools=[_TOOL], timeout_s=TIMEOUT_S)
    except LLMRejectedError as exc:
        if exc.status == 400 and client.name == "vllm":
            return fail(
                name,
                f"{where} refused a request with tools (400): {exc.reason}",
                f"启动 vLLM 时加上 {VLLM_TOOL_FLAGS}（Qwen 模型用 hermes 解析器）",
                f"start vLLM with {VLLM_TOOL_FLAGS} (the hermes parser for Qwen models)",
            )
        return fail(
            name,
            f"{where} refused the request: {exc}",
            "核对模型名与 API Key（VLLM_MODEL / VLLM_API_KEY，"
            "或 DASHSCOPE_MODEL / DASHSCOPE_API_KEY）",
            "check the model name and API key (VLLM_MODEL / VLLM_API_KEY, or DASHSCOPE_MODEL / "
            "DASHSCOPE_API_KEY)",
        )
    except BotError as exc:
        return fail(
            name,
            f"cannot reach {where}: {exc}",
            "确认模型服务已启动，且本机能访问该地址（VLLM_BASE_URL / DASHSCOPE_BASE_URL）",
            "check the model server is running and this host reaches it (VLLM_BASE_URL / "
            "DASHSCOPE_BASE_URL)",
        )
    return ok(name, f"{where} answered a chat request with one tool")


async def check_vision(client: LLMClient) -> Result:
    """VLLM_VISION=true / DASHSCOPE_VISION_MODEL: the model accepts a picture (a text-only
    model answers 400)."""
    name = f"vision {client.name}"
    setting = "VLLM_VISION=true" if client.name == "vllm" else "DASHSCOPE_VISION_MODEL is set"
    picture = await asyncio.to_thread(_tiny_picture)
    messages = [{"role": "user", "content": images.with_pictures("What colour is it?", [picture])}]
    try:
        await client.complete(messages, timeout_s=TIMEOUT_S)
    except LLMRejectedError as exc:
        if client.name == "vllm":
            fix = (
                "让 vLLM 提供视觉语言模型（如 Qwen2.5-VL），或去掉 VLLM_VISION",
                "serve a vision-language model on vLLM (e.g. Qwen2.5-VL), or unset VLLM_VISION",
            )
        else:
            fix = (
                "把 DASHSCOPE_VISION_MODEL 设为已开通的视觉模型（如 qwen-vl-max），或去掉它",
                "set DASHSCOPE_VISION_MODEL to a vision model you have access to (e.g. "
                "qwen-vl-max), or unset it",
            )
        return fail(
            name, f"{setting}, but the model refused a picture ({exc.status}): {exc.reason}", *fix
        )
    except BotError as exc:
        where = "VLLM_BASE_URL" if client.name == "vllm" else "DASHSCOPE_BASE_URL"
        return fail(
            name,
            f"no answer to a picture: {exc}",
            f"确认模型服务已启动（{where}）",
            f"check the model server is running ({where})",
        )
    return ok(name, "the model accepted a picture")


def _tiny_picture() -> bytes:
    """A small red square as a JPEG, the way pictures are sent (bot/llm/images.py)."""
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (32, 32), (220, 30, 30)).save(out, format="PNG")
    return images.downscale(out.getvalue(), max_side=32)


async def check_embedding(settings: Settings, engine: Engine) -> Result:
    name = "embedding"
    e = settings.embedding
    if not e.enabled:
        return skip(name, "EMBEDDING_* not configured")
    key = e.api_key.get_secret_value()
    if e.provider == "dashscope":
        key = settings.dashscope.api_key.get_secret_value()
        if not key:
            return fail(
                name,
                "EMBEDDING_PROVIDER=dashscope without DASHSCOPE_API_KEY",
                "设置 DASHSCOPE_API_KEY",
                "set DASHSCOPE_API_KEY",
            )
    embedder = make_embedder(
        e.provider, e.base_url, e.model, key, dim=e.dim, timeout_s=TIMEOUT_S, retries=0
    )
    try:
        vectors = await asyncio.to_thread(embedder.embed, ["ping"])
    except Exception as exc:  # a check reports what went wrong, it never crashes
        return fail(
            name,
            f"{embedder.model} at {e.base_url or 'DashScope'}: {exc}",
            "确认向量服务已启动、EMBEDDING_BASE_URL / EMBEDDING_MODEL / Key 正确",
            "check the embedding server runs and EMBEDDING_BASE_URL / EMBEDDING_MODEL / key",
        )
    finally:
        embedder.close()
    dim = int(vectors.shape[1])
    stored = await asyncio.to_thread(_stored_dim, engine, embedder.model)
    if stored is None:
        return ok(name, f"{embedder.model}: {dim} dimensions (no vectors stored yet)")
    if stored != dim:
        return fail(
            name,
            f"{embedder.model} answers {dim} dimensions, the stored vectors have {stored}",
            "模型或 EMBEDDING_DIM 变了：运行 `bot kb reindex` 重建向量",
            "the model or EMBEDDING_DIM changed: run `bot kb reindex` to rebuild the vectors",
        )
    return ok(name, f"{embedder.model}: {dim} dimensions, as the stored vectors")


def _stored_dim(engine: Engine, model: str) -> int | None:
    table = ChunkVector.__tablename__
    query = text(f"SELECT dim FROM {table} WHERE model = :model LIMIT 1")  # noqa: S608 - our name
    try:
        with engine.connect() as conn:
            dim = conn.execute(query, {"model": model}).scalar()
    except Exception:  # no tables yet (a fresh database): nothing stored
        return None
    return int(dim) if dim is not None else None
