"""The customer-service agent: knowledge, tools, short memory, and a tool-calling loop.

It depends only on protocols (`LLMClient`, `Retriever`, the tool registry) and never sees
a platform or a task. When the best match is an FAQ entry at least `faq_direct_score`
confident, its written answer is the reply and no model is called. Otherwise the user's
message is searched in the knowledge base first (so a model that never calls tools still
answers from it) and the model answers through `bot.agent.agent.toolloop` with the registry's tools:
knowledge search, the bound customer's orders, the time, a handoff to a person. Identity
(`identify`) is resolved by code before the loop; no prompt or argument can change it.

When no model is configured or every model fails it still answers: from the order backend
(`without_model`) when it can, else the best knowledge-base match when it is confident
enough, else a polite promise that a human will follow up. An answer built from document
passages ends with a plain-text line naming them (`bot.domain.sources_line`); they are in
`Answer.citations` too, for channels that show them as a list.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bot.agent import codes, documents, judge, questions, smalltalk
from bot.agent import trace as tracing
from bot.agent.prompt import build_messages, label, system_prompt
from bot.agent.toolloop import DEFAULT_MAX_STEPS, LoopResult, run_loop
from bot.agent.trace import Trace
from bot.domain import Content, InboundMessage, MessageKind, Source, Turn, sources_line
from bot.llm import images
from bot.llm.base import ChatMessage, LLMClient, OnDelta
from bot.tools.builtin import HANDOFF_TO_HUMAN, SEARCH_KNOWLEDGE
from bot.tools.registry import ToolContext, ToolRegistry
from knowledge import synonym_table
from knowledge.base import Hit, Retriever

log = logging.getLogger(__name__)

DEFAULT_SYSTEM_PROMPT = system_prompt()
# Fills ToolContext.customer_id from the platform user's binding (before the loop).
Identify = Callable[[ToolContext], Awaitable[None]]
# Answers (ctx, text) from non-model sources (the order backend) when no model can; None: no.
WithoutModel = Callable[[ToolContext, str], Awaitable[str | None]]
WELCOME_TEXT = "您好，我是智能客服助手，请问有什么可以帮您？"
HUMAN_FOLLOW_UP_TEXT = "抱歉，我暂时无法回答这个问题。您的问题已记录，人工客服会尽快跟进。"
# The model asked for a person, then could not say so itself.
HANDOFF_TEXT = "好的，已为您转接人工客服，请稍候，客服人员会尽快回复您。"
# What the model is asked when a customer sends a picture on its own.
PICTURE_QUESTION = (
    "[图片] 用户发来了这张图片。请看图，说明图中与客服有关的内容（例如错误码、商品、订单或"
    "截图里的提示），需要时查询知识库后回答；看不清或与问题无关时，请用户补充说明。"
)
MAX_CITATIONS = 2
# A passage is cited only when the answer shares at least this many distinct character
# bigrams with it: a passage that was given to the model but not used is not a source.
MIN_SHARED_BIGRAMS = 6
_WORD_CHARS = re.compile(r"[^\W_]+")


@dataclass(frozen=True, slots=True)
class Answer:
    """What the agent says, where it came from, and whether a model produced it."""

    text: str
    sources: tuple[Source, ...] = ()
    backend: str = ""
    degraded: bool = False
    # Set when the turn asks for a person (the model's `handoff_to_human`, or a trigger).
    handoff_reason: str = ""
    # Best knowledge-retrieval score of the turn (None: nothing was searched).
    confidence: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # What kind of answer (bot/agent/trace.py OUTCOMES) and what the bot did to find it.
    outcome: str = ""
    trace: Trace = field(default_factory=Trace)
    # The passages the text's last line names (`sources_line`), best first.
    citations: tuple[Source, ...] = ()

    def to_json(self) -> str:
        return json.dumps(
            {
                "text": self.text,
                "sources": [[s.title, s.section] for s in self.sources],
                "backend": self.backend,
                "degraded": self.degraded,
                "handoff_reason": self.handoff_reason,
                "confidence": self.confidence,
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "outcome": self.outcome,
                "trace": self.trace.to_dict(),
                "citations": [[s.title, s.section] for s in self.citations],
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> Answer:
        data = json.loads(raw)
        return cls(
            text=data["text"],
            sources=tuple(Source(t, s) for t, s in data.get("sources", [])),
            backend=data.get("backend", ""),
            degraded=bool(data.get("degraded", False)),
            handoff_reason=str(data.get("handoff_reason") or ""),
            confidence=data.get("confidence"),
            prompt_tokens=int(data.get("prompt_tokens") or 0),
            completion_tokens=int(data.get("completion_tokens") or 0),
            outcome=str(data.get("outcome") or ""),
            trace=Trace.from_dict(data.get("trace")),
            citations=tuple(Source(t, s) for t, s in data.get("citations", [])),
        )


class Agent:
    """Answers one message given the conversation's recent turns."""

    def __init__(
        self,
        llm: LLMClient | None,
        retriever: Retriever | None,
        *,
        system_prompt: str = "",
        min_confidence: float = 0.35,
        faq_direct_score: float = 0.8,
        answer_probability: float = judge.THRESHOLD,
        context_hits: int = 4,
        timeout_s: float = 60.0,
        tools: ToolRegistry | None = None,
        max_steps: int = DEFAULT_MAX_STEPS,
        identify: Identify | None = None,
        without_model: WithoutModel | None = None,
        small_talk: smalltalk.SmallTalkTexts | None = None,
        vision: bool = False,
    ) -> None:
        self._llm = llm
        self._retriever = retriever
        self._system_prompt = system_prompt or DEFAULT_SYSTEM_PROMPT
        self._min_confidence = min_confidence
        self._faq_direct_score = faq_direct_score
        self._answer_probability = answer_probability
        self._context_hits = context_hits
        self._timeout_s = timeout_s
        self._tools = tools if tools is not None else ToolRegistry()
        self._max_steps = max_steps
        self._identify = identify
        self._without_model = without_model
        self._small_talk = small_talk or smalltalk.SmallTalkTexts()
        # The model sees pictures (VLLM_VISION): a message's prepared pictures go with it
        # (bot/pipeline/vision.py made them JPEGs within the size limits).
        self._vision = vision

    @property
    def tools(self) -> ToolRegistry:
        return self._tools

    async def reply(
        self, history: Sequence[Turn], message: InboundMessage, *, on_delta: OnDelta | None = None
    ) -> Answer:
        if message.kind is MessageKind.EVENT:
            # An account's own welcome (MP subscribe, a DingTalk group) is answered by the
            # auto-reply step before the agent is asked.
            return Answer(text=WELCOME_TEXT, degraded=True, outcome=tracing.OTHER)
        text = message.text
        shortened = False
        if self._llm is None:
            # No model: small talk and several questions are answered here; a model (which
            # sees the history) answers them itself.
            parts = questions.readings(text)
            plain = await self._plainly(message, parts)
            if plain is not None:
                return plain
            if parts:
                text, _ = await asyncio.to_thread(self._best_reading, *parts[0])
                shortened = text != parts[0][0]
        # Pre-retrieval: small models that do not call tools still answer from the knowledge.
        # Search is CPU work (and maybe an embedding call): off the shared event loop.
        # Without a model the judge weighs more candidates than a model is shown.
        k = self._context_hits if self._llm else max(self._context_hits, judge.CANDIDATES)
        hits = await asyncio.to_thread(self._retriever.search, text, k) if self._retriever else []
        hits = codes.reconcile(text, hits, self._min_confidence)  # E1 never answers E2
        best = hits[0] if hits else None
        # A shorter reading left lines out (an order number, maybe): the order backend is
        # asked with the whole message first, in _degraded, before any written answer.
        if (
            best is not None
            and best.answer is not None
            and best.score >= self._faq_direct_score
            and not shortened
        ):
            # A written answer to the question asked: say it as is, no model needed.
            return Answer(
                text=best.answer,
                sources=_sources([best]),
                backend="faq",
                confidence=best.score,
                outcome=tracing.FAQ,
                trace=Trace(hits=tracing.of_hits(hits)),
            )
        relevant = [h for h in hits if h.score >= self._min_confidence]
        confidence = best.score if best is not None else 0.0
        ctx = ToolContext(message, confidence=confidence if self._retriever else None)
        await self._resolve(ctx)
        result: LoopResult | None = None
        if self._llm is not None:
            messages = build_messages(
                self._system_prompt,
                history,
                documents.question(message),
                relevant,
                confidence,
                self._min_confidence,
            )
            # Files the customer sent (bot/pipeline/files.py): their text, as fenced data.
            files = await documents.section(message)
            if files:
                messages[0]["content"] = f"{messages[0]['content']}\n\n{files}"
            if self._vision:
                messages[-1]["content"] = await self._with_pictures(message)
            result = await run_loop(
                self._llm,
                messages,
                self._tools,
                ctx,
                max_steps=self._max_steps,
                timeout_s=self._timeout_s,
                on_delta=on_delta,
            )
            log.info("%s", result.summary())
            if result.answered:
                answer = self._answered(result, ctx, relevant)
                return replace(answer, trace=tracing.of_loop(hits, result))
            if result.steps:
                log.warning("model answered no text after %d steps, degrading", len(result.steps))
        chosen = await asyncio.to_thread(self._chosen, text, hits)
        answer = await self._degraded(ctx, text, chosen, result)
        return replace(answer, trace=tracing.of_loop(hits, result))

    async def _with_pictures(self, message: InboundMessage) -> str | list[dict[str, Any]]:
        """The user's message with its pictures as image parts (just the text without any)."""
        paths = [
            a.path
            for a in message.attachments
            if a.kind is Content.IMAGE and a.path and not a.error
        ]
        # A picture alone: ask the model about it rather than about "[图片]".
        text = (
            PICTURE_QUESTION
            if paths and message.content is Content.IMAGE
            else documents.question(message)
        )
        try:
            jpegs = await asyncio.to_thread(lambda: [Path(p).read_bytes() for p in paths])
        except OSError as exc:
            log.warning("pictures of %s unreadable (%s): asked without them", message.event_id, exc)
            return message.text
        return images.with_pictures(text, jpegs)

    async def _plainly(
        self, message: InboundMessage, parts: list[tuple[str, str | None]]
    ) -> Answer | None:
        """Small talk, or each of several questions answered from the knowledge base (no
        model); None for one question, which takes the usual path."""
        if not parts and any(c.isalnum() for c in message.text):
            # Every piece was small talk (a long "在吗 在吗 在吗" burst too): greet back.
            kind = smalltalk.kind_of(message.text) or smalltalk.GREETING
            said = self._small_talk.text(kind)
            return Answer(text=said, backend="smalltalk", outcome=tracing.OTHER)
        if len(parts) < 2 or self._retriever is None:
            return None
        ctx = ToolContext(message)
        if self._without_model is not None:
            await self._resolve(ctx)
        answered = [await self._part(ctx, q, shorter) for q, shorter in parts]
        found = [p.hit.score for p in answered if p.hit is not None]
        some = any(p.said is not None for p in answered)
        cited = tuple(
            Source(p.hit.source, p.hit.section)
            for p in answered
            if p.hit is not None and p.hit.answer is None
        )
        text = questions.numbered(answered)
        return Answer(
            text=text + sources_line(tuple(dict.fromkeys(cited))) if some else text,
            sources=questions.sources(answered),
            citations=tuple(dict.fromkeys(cited)),
            degraded=True,
            confidence=min(found) if found else 0.0,
            outcome=tracing.KNOWLEDGE if some else tracing.DECLINED,
        )

    async def _part(
        self, ctx: ToolContext, question: str, shorter: str | None = None
    ) -> questions.PartAnswer:
        """One of several questions: the order backend first, as `_degraded` does, then the
        knowledge base (the shorter reading when the question finds nothing)."""
        if self._without_model is not None:
            try:
                said = await self._without_model(ctx, question)
            except Exception:
                log.exception("answering without a model failed")
                said = None
            if said:
                return questions.PartAnswer(question, said)
        asked, hit = await asyncio.to_thread(self._best_reading, question, shorter)
        return questions.PartAnswer(question, _said(asked, hit) if hit else None, hit)

    def _best_reading(self, question: str, shorter: str | None) -> tuple[str, Hit | None]:
        """`question` and its `_best`, or its shorter reading (questions.readings) and that
        one's when only the shorter finds an answer in the knowledge base."""
        hit = self._best(question)
        if hit is not None or shorter is None:
            return question, hit
        short_hit = self._best(shorter)
        return (shorter, short_hit) if short_hit is not None else (question, None)

    def _best(self, text: str) -> Hit | None:
        """What answers `text` without a model (as `reply` and `_degraded` choose), or None."""
        return self._chosen(text, self._candidates(text))

    def _candidates(self, text: str) -> list[Hit]:
        """The hits the judge weighs for `text` (more than a model is shown)."""
        k = max(self._context_hits, judge.CANDIDATES)
        hits = self._retriever.search(text, k) if self._retriever else []
        return codes.reconcile(text, hits, self._min_confidence)

    def _chosen(self, text: str, hits: list[Hit]) -> Hit | None:
        """The candidate that answers `text` without a model, or None: an FAQ asked nearly
        word for word or written for the code asked about (E2), else the judge's most
        probable one when probable enough."""
        direct = self._direct(hits)
        if direct is not None:
            return direct
        coded = codes.written_for(text, hits)
        if coded is not None:
            return coded
        probable = self._probable(_judged(text, hits))
        if probable is not None:
            return probable
        # Typed by sound ("话废怎么冲"): asked again in the candidates' own characters.
        fixed = judge.respelled(text, hits)
        if self._retriever is None or fixed == judge.respelled(text, []):
            return None
        hits = self._candidates(fixed)
        direct = self._direct(hits)
        return direct if direct is not None else self._probable(judge.judge(fixed, hits))

    def _direct(self, hits: list[Hit]) -> Hit | None:
        """The first hit when it is an FAQ asked nearly word for word: said as written."""
        top = hits[0] if hits else None
        if top is not None and top.answer is not None and top.score >= self._faq_direct_score:
            return top
        return None

    def _probable(self, judged: list[judge.Judged]) -> Hit | None:
        """The judge's most probable candidate when probable enough to answer with."""
        if judged and judged[0].probability >= self._answer_probability:
            return judged[0].hit
        return None

    async def _resolve(self, ctx: ToolContext) -> None:
        if self._identify is None:
            return
        try:
            await self._identify(ctx)
        except Exception:
            # Unbound is the safe side: order tools then answer for nobody.
            log.exception("could not resolve the customer of a %s user", ctx.message.platform)

    def _answered(self, result: LoopResult, ctx: ToolContext, relevant: list[Hit]) -> Answer:
        # The sources line is not streamed: a streaming channel (the web chat) lists them.
        text = result.text.strip()
        cited = _cited(text, relevant + _searched(result.messages, self._min_confidence))
        citations = tuple(Source(h.source, h.section) for h in cited)
        text += sources_line(citations)
        return Answer(
            text=text,
            sources=_merge(_sources(relevant), ctx.sources),
            backend=result.backend,
            handoff_reason=ctx.handoff_reason,
            # Grounded elsewhere (a tool, the customer's own file): the knowledge confidence
            # says nothing about it, and must not count toward the low-confidence handoff.
            confidence=(
                None
                if _grounded_in_tools(result) or documents.texts(ctx.message)
                else ctx.confidence
            ),
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            outcome=tracing.MODEL,
            citations=citations,
        )

    async def _degraded(
        self, ctx: ToolContext, text: str, chosen: Hit | None, result: LoopResult | None
    ) -> Answer:
        # What the turn did still counts: a handoff asked for, tokens spent before the failure.
        base = Answer(
            text=HUMAN_FOLLOW_UP_TEXT,
            degraded=True,
            handoff_reason=ctx.handoff_reason,
            confidence=ctx.confidence,
            prompt_tokens=result.prompt_tokens if result else 0,
            completion_tokens=result.completion_tokens if result else 0,
            outcome=tracing.DECLINED,
        )
        if self._without_model is not None:
            # Order questions can be answered from the order backend alone (e.g. status).
            try:
                said = await self._without_model(ctx, ctx.message.text)
            except Exception:
                log.exception("answering without a model failed")
                said = None
            if said:
                return replace(base, text=said, backend="orders", outcome=tracing.ORDERS)
        if ctx.handoff_reason:
            return replace(base, text=HANDOFF_TEXT, outcome=tracing.HANDOFF)
        kind = smalltalk.kind_of(ctx.message.text)
        if kind is not None:
            return replace(base, text=self._small_talk.text(kind), outcome=tracing.OTHER)
        if chosen is not None:
            cited = () if chosen.answer is not None else _sources([chosen])
            return replace(
                base,
                text=_said(text, chosen) + sources_line(cited),
                sources=_sources([chosen]),
                outcome=tracing.KNOWLEDGE,
                citations=cited,
            )
        return base


def _judged(text: str, hits: list[Hit]) -> list[judge.Judged]:
    """The judge's verdicts on `hits` for `text`; with the operator's synonyms, the hits are
    also read in the customer's words (扫地机器人 as the 扫地宝 asked about), and the more
    probable reading is kept."""
    judged = judge.judge(text, hits)
    table = synonym_table.current()
    if not len(table):
        return judged

    def read(hit: Hit) -> Hit:
        return replace(
            hit,
            text=table.in_words_of(text, hit.text),
            section=table.in_words_of(text, hit.section),
            answer=None if hit.answer is None else table.in_words_of(text, hit.answer),
            questions=tuple(table.in_words_of(text, q) for q in hit.questions),
        )

    seen = [read(hit) for hit in hits]
    if seen == hits:
        return judged
    original = {id(s): h for s, h in zip(seen, hits, strict=True)}
    other = [
        judge.Judged(original[id(j.hit)], j.features, j.probability)
        for j in judge.judge(text, seen)
    ]
    if other and (not judged or other[0].probability > judged[0].probability):
        return other
    return judged


def _said(question: str, hit: Hit) -> str:
    """What to say from `hit`: an FAQ's written answer, or the passage's sentences that
    answer `question`."""
    return hit.answer if hit.answer is not None else judge.excerpt(question, hit.text)


def _searched(messages: Sequence[ChatMessage], min_score: float) -> list[Hit]:
    """The passages `search_knowledge` returned this turn (citable like pre-retrieved ones)."""
    found: list[Hit] = []
    for m in messages:
        if m.get("role") != "tool" or m.get("name") != SEARCH_KNOWLEDGE:
            continue
        try:
            data = json.loads(m.get("content") or "")
        except json.JSONDecodeError:
            continue
        for d in data.get("data", []) if isinstance(data, dict) else []:
            if isinstance(d, dict) and float(d.get("score", 0)) >= min_score:
                hit = Hit(
                    str(d.get("text", "")),
                    str(d.get("source", "")),
                    str(d.get("section", "")),
                    float(d.get("score", 0)),
                    d.get("answer"),
                )
                found.append(hit)
    return found


def _grounded_in_tools(result: LoopResult) -> bool:
    """Whether a tool other than knowledge search answered (an order, the time).

    Such a turn was not a knowledge question: its knowledge confidence says nothing about
    the answer, and reporting it would count toward the low-confidence handoff trigger.
    """
    return any(
        t.ok and t.name not in (SEARCH_KNOWLEDGE, HANDOFF_TO_HUMAN)
        for step in result.steps
        for t in step.tools
    )


def _merge(first: tuple[Source, ...], more: Sequence[Source]) -> tuple[Source, ...]:
    return tuple(dict.fromkeys((*first, *more)))


def _bigrams(text: str) -> set[str]:
    return {
        run[i : i + 2] for run in _WORD_CHARS.findall(text.lower()) for i in range(len(run) - 1)
    }


def _cited(answer: str, hits: list[Hit]) -> list[Hit]:
    """The passages (not FAQ entries) among `hits` the answer drew on, best first, at most 2.

    Drawing on a passage is measured as sharing `MIN_SHARED_BIGRAMS` character bigrams
    with it, so an answer that only asks back or declines names no source.
    """
    said = _bigrams(answer)
    cited: list[Hit] = []
    for hit in hits:
        if hit.answer is not None or any(label(c) == label(hit) for c in cited):
            continue
        if len(said & _bigrams(hit.text)) >= MIN_SHARED_BIGRAMS:
            cited.append(hit)
        if len(cited) == MAX_CITATIONS:
            break
    return cited


def _sources(hits: list[Hit]) -> tuple[Source, ...]:
    seen: dict[tuple[str, str], Source] = {}
    for h in hits:
        seen.setdefault((h.source, h.section), Source(h.source, h.section))
    return tuple(seen.values())
