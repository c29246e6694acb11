"""The model backends, embeddings and the reranker (VLLM_*, DASHSCOPE_*, EMBEDDING_*, RERANK_*)."""

from __future__ import annotations

import importlib.util

from pydantic import Field, SecretStr, field_validator

from bot.errors import ConfigError
from bot.settings.base import Section, env_config


class VLLMSettings(Section):
    """Primary model: a vLLM (OpenAI-compatible) server."""

    model_config = env_config("VLLM_")
    REQUIRED = ("base_url", "model")

    base_url: str = ""
    model: str = ""
    api_key: SecretStr = SecretStr("")
    timeout_s: float = 30.0
    # The dashboard's estimated cost (see `estimated_cost`); 0: not shown.
    price_per_1k_tokens: float = Field(default=0.0, ge=0)
    price_per_1k_output_tokens: float = Field(default=0.0, ge=0)
    # VLLM_VISION=true: the model reads pictures (a vision-language model such as
    # Qwen2.5-VL): pictures customers send are shown to it (docs/agent.md#pictures).
    vision: bool = False
    # Pictures are sent as JPEGs at most this many pixels on their longer side.
    image_max_side: int = Field(default=1280, ge=64, le=4096)
    # How long a picture stays part of its conversation: a question within this time can
    # refer to it ("这个错误码什么意思？" after a screenshot).
    image_memory_s: int = Field(default=1800, ge=0, le=86400)

    def check(self) -> None:
        super().check()
        if self.vision and not self.enabled:
            raise ConfigError(
                "VLLM_VISION=true needs VLLM_BASE_URL and VLLM_MODEL (a vision-language model)"
            )
        if self.vision and importlib.util.find_spec("PIL") is None:
            raise ConfigError("VLLM_VISION=true needs Pillow: pip install pillow")


class DashScopeSettings(Section):
    """Fallback model: DashScope (Qwen)."""

    model_config = env_config("DASHSCOPE_")
    REQUIRED = ("api_key",)

    api_key: SecretStr = SecretStr("")
    model: str = "qwen-plus"
    base_url: str = ""
    timeout_s: float = 30.0
    price_per_1k_tokens: float = Field(default=0.0, ge=0)
    price_per_1k_output_tokens: float = Field(default=0.0, ge=0)
    # DASHSCOPE_VISION_MODEL=qwen-vl-max: a question that carries pictures goes to this
    # multimodal model (MultiModalConversation) instead of DASHSCOPE_MODEL, so DashScope sees
    # pictures: the vision fallback behind VLLM_VISION, or the only vision model.
    vision_model: str = ""
    # Whether the vision model is offered the tools (knowledge search, orders): true for the
    # models with function calling (qwen3-vl-plus, qwen-vl-max); false for one that refuses
    # a request with tools (it then answers from the picture and the retrieved knowledge).
    vision_tools: bool = True

    def check(self) -> None:
        super().check()
        if (self.base_url or self.vision_model) and not self.enabled:
            raise ConfigError("DASHSCOPE is partly configured; missing: DASHSCOPE_API_KEY")
        if self.vision_model and importlib.util.find_spec("PIL") is None:
            raise ConfigError("DASHSCOPE_VISION_MODEL needs Pillow: pip install pillow")


def estimated_cost(
    section: VLLMSettings | DashScopeSettings, prompt_tokens: int, completion_tokens: int
) -> float | None:
    """What the tokens cost at the backend's configured prices; None when no price is set.

    `price_per_1k_tokens` prices every token (in whatever currency the operator wrote it);
    `price_per_1k_output_tokens`, when set, prices the completion tokens instead (DashScope
    charges output several times input).
    """
    price_in = section.price_per_1k_tokens
    price_out = section.price_per_1k_output_tokens or price_in
    if not price_in and not price_out:
        return None
    return (prompt_tokens * price_in + completion_tokens * price_out) / 1000


class EmbeddingSettings(Section):
    """Embeddings for dense knowledge retrieval: an OpenAI-compatible endpoint, or DashScope.

    EMBEDDING_PROVIDER=dashscope uses DashScope's OpenAI-compatible mode with
    DASHSCOPE_API_KEY (base URL and model then default to DashScope's).
    """

    model_config = env_config("EMBEDDING_")
    REQUIRED = ("base_url", "model")
    TRIGGERS = ("base_url", "model", "provider")

    provider: str = ""  # "" / "openai": any OpenAI-compatible /v1/embeddings; "dashscope"
    base_url: str = ""
    model: str = ""
    api_key: SecretStr = SecretStr("")
    dim: int = Field(default=0, ge=0)  # 0: whatever the model returns
    batch_size: int = Field(default=32, ge=1, le=2048)
    timeout_s: float = Field(default=30.0, gt=0)
    retries: int = Field(default=3, ge=0, le=10)  # per ingestion batch, on 429/5xx/timeouts
    # The service's rate limit for ingestion calls (0: none); a query is never held back.
    calls_per_minute: int = Field(default=0, ge=0)
    # A query waits this long for its vector, then search goes on with keywords only.
    query_timeout_s: float = Field(default=2.0, gt=0)
    # Fusion of keyword and vector rankings: "rrf" (reciprocal rank) or "weighted".
    fusion: str = "weighted"
    # Weighted fusion: the keyword confidence's share (the dense one has the rest).
    fusion_weight: float = Field(default=0.5, ge=0, le=1)
    # Cosine at or below this is dense confidence 0 (unrelated texts' typical cosine).
    sim_floor: float = Field(default=0.3, ge=-1, lt=1)

    @field_validator("provider")
    @classmethod
    def _known_provider(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in ("", "openai", "dashscope"):
            raise ValueError("EMBEDDING_PROVIDER must be openai or dashscope")
        return value

    @field_validator("fusion")
    @classmethod
    def _known_fusion(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in ("rrf", "weighted"):
            raise ValueError("EMBEDDING_FUSION must be rrf or weighted")
        return value

    def check(self) -> None:
        if self.provider == "dashscope":
            return  # base URL and model have DashScope defaults; the key is DASHSCOPE_API_KEY
        super().check()


class RerankSettings(Section):
    """An optional reranker of knowledge hits: OpenAI-style `/v1/rerank` or DashScope.

    RERANK_PROVIDER=dashscope uses gte-rerank with DASHSCOPE_API_KEY (URL and model have
    defaults).
    """

    model_config = env_config("RERANK_")
    REQUIRED = ("base_url", "model")
    TRIGGERS = ("base_url", "model", "provider")

    provider: str = ""  # "" / "openai" (vLLM, Jina, bge servers) or "dashscope"
    base_url: str = ""
    model: str = ""
    api_key: SecretStr = SecretStr("")
    # The reranker's whole budget per search; past it the fused order stands.
    timeout_s: float = Field(default=2.0, gt=0)
    candidates: int = Field(default=20, ge=2, le=100)  # fused hits sent to be reordered

    @field_validator("provider")
    @classmethod
    def _known_provider(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in ("", "openai", "dashscope"):
            raise ValueError("RERANK_PROVIDER must be openai or dashscope")
        return value

    def check(self) -> None:
        if self.provider == "dashscope":
            return
        super().check()
