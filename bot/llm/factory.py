"""Builds the model router from settings: vLLM first, DashScope second, either optional."""

from __future__ import annotations

from bot.llm.base import LLMClient
from bot.llm.dashscope import DashScopeClient
from bot.llm.openai_compat import OpenAICompatClient
from bot.llm.router import LLMRouter
from bot.settings import Settings


def backend_names(settings: Settings) -> list[str]:
    """The configured model backends' names, in fallback order (as the router names them)."""
    return [
        name
        for name, section in (("vllm", settings.vllm), ("dashscope", settings.dashscope))
        if section.enabled
    ]


def build_router(settings: Settings, *, keep_clients: bool = False) -> LLMRouter | None:
    """The configured backends in fallback order, or None when no backend is configured.

    `keep_clients`: HTTP clients live as long as the event loop (a worker's Runtime, which
    closes them); otherwise each call opens and closes its own (CLI tools, one-off loops).
    """
    clients = model_clients(settings, keep_clients=keep_clients)
    if not clients:
        return None
    return LLMRouter(clients, sees_images=settings.vision_backends())


def model_clients(
    settings: Settings, *, keep_clients: bool = False, timeout_s: float | None = None
) -> list[LLMClient]:
    """A client per configured backend, in fallback order; `timeout_s` replaces each
    backend's own limit (`bot doctor` asks every backend with one short limit)."""
    clients: list[LLMClient] = []
    if settings.vllm.enabled:
        clients.append(
            OpenAICompatClient(
                "vllm",
                base_url=settings.vllm.base_url,
                model=settings.vllm.model,
                api_key=settings.vllm.api_key.get_secret_value() or "EMPTY",
                timeout_s=settings.vllm.timeout_s if timeout_s is None else timeout_s,
                keep_client=keep_clients,
            )
        )
    if settings.dashscope.enabled:
        clients.append(
            DashScopeClient(
                api_key=settings.dashscope.api_key.get_secret_value(),
                model=settings.dashscope.model,
                base_url=settings.dashscope.base_url,
                timeout_s=settings.dashscope.timeout_s if timeout_s is None else timeout_s,
                vision_model=settings.dashscope.vision_model,
                vision_tools=settings.dashscope.vision_tools,
            )
        )
    return clients
