"""What a customer sees without a model: right / wrong / declined per question.

Run from anywhere (or as `bot kb eval --answers`)::

    .venv/bin/python -m benchmarks.answer_eval                    # the sample set
    .venv/bin/python -m benchmarks.answer_eval --sets sample,telecom,travel -v

Each message of a set is sent to `bot.agent.agent.Agent` with no model over the set's
knowledge, keyword search as the bot builds it, in a fresh conversation; "人工" and the
other hand-over phrases go to a person first, as in the pipeline (bot/handoff/rules.py).
Sets: ``sample`` (benchmarks/data/answers/sample.jsonl over examples/knowledge) and the
customer-service sets of benchmarks/data/cs (their own knowledge folders; ``heldout`` only
when named). The question format and the judging are those of benchmarks/data/cs/README.md,
judged by key facts: a sub-question is right when the reply holds every one of its facts
(whitespace ignored), declined when the reply says it cannot answer (the whole reply, or
that part of a numbered one), else wrong. A ``none`` part, a greeting and an out-of-scope
question are right only when nothing is answered from the knowledge.

Printed per set: answerable single questions right / wrong / declined; multi-question
messages and bursts fully answered (every part right); out-of-scope messages declined;
greetings answered as small talk (or handed over when they ask for a person).

``--backend postgresql`` loads each set's knowledge into a throwaway PostgreSQL database
(made on the server of ``--database-url``, dropped afterwards) the way ``bot kb add`` does,
and searches it as a worker on PostgreSQL does (keyword search inside the database): the
figures should match the default in-process index's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.agent import questions
from bot.agent.agent import HANDOFF_TEXT, HUMAN_FOLLOW_UP_TEXT, Agent, Answer
from bot.domain import InboundMessage, Platform
from bot.handoff.rules import wants_human
from knowledge.base import Retriever
from knowledge.search.retrieval import KeywordRetriever

REPO = Path(__file__).resolve().parents[1]
SAMPLE = "sample"
SAMPLE_QUESTIONS = REPO / "benchmarks" / "data" / "answers" / "sample.jsonl"
SAMPLE_KNOWLEDGE = REPO / "examples" / "knowledge"
CS_DATA = REPO / "benchmarks" / "data" / "cs"
HELD_OUT = "heldout"
MEMORY, POSTGRESQL = "memory", "postgresql"
PG_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DECLINES = (HUMAN_FOLLOW_UP_TEXT, questions.NONE_ANSWERED, HANDOFF_TEXT)
RIGHT, WRONG, DECLINED = "right", "wrong", "declined"


@dataclass
class Tally:
    """Counts of one set."""

    single: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys((RIGHT, WRONG, DECLINED), 0)
    )
    multi: int = 0
    multi_full: int = 0
    outside: int = 0
    outside_declined: int = 0
    greetings: int = 0
    greetings_answered: int = 0
    failures: list[str] = field(default_factory=list)


def _flat(text: str) -> str:
    return "".join(text.split())


def declined(answer: Answer) -> bool:
    """The whole reply says it cannot answer (or hands over)."""
    return answer.outcome in ("declined", "handoff") or answer.text in DECLINES


def judge_part(text: str, facts: Sequence[str], whole_declined: bool) -> str:
    """One answerable sub-question: right when every fact is said."""
    if facts and all(_flat(f) in _flat(text) for f in facts):
        return RIGHT
    if whole_declined or questions.UNANSWERED_PART in text:
        return DECLINED
    return WRONG


def said_nothing_for_a_part(text: str, whole_declined: bool) -> bool:
    return whole_declined or questions.UNANSWERED_PART in text


async def reply(agent: Agent, text: str) -> Answer:
    """As the pipeline answers: a request for a person first, else the agent."""
    if wants_human(text):
        return Answer(text=HANDOFF_TEXT, handoff_reason="requested", outcome="handoff")
    message = InboundMessage(Platform.WEB, "default", "eval", "eval", "eval", text)
    return await agent.reply([], message)


async def run_set(agent: Agent, items: Sequence[dict[str, Any]]) -> Tally:
    tally = Tally()
    for q in items:
        answer = await reply(agent, q["text"])
        whole = declined(answer)
        kind = q["type"]
        if kind == "greeting":
            tally.greetings += 1
            ok = answer.backend == "smalltalk" or (
                wants_human(q["text"]) and answer.outcome == "handoff"
            )
            tally.greetings_answered += ok
            verdict = RIGHT if ok else WRONG
        elif kind == "out_of_scope":
            tally.outside += 1
            tally.outside_declined += whole
            verdict = RIGHT if whole else WRONG
        elif kind == "single" and "none" not in q["expect"][0]:
            verdict = judge_part(answer.text, q["facts"][0], whole)
            tally.single[verdict] += 1
        else:
            tally.multi += 1
            verdicts = [
                (RIGHT if said_nothing_for_a_part(answer.text, whole) else WRONG)
                if "none" in expect
                else judge_part(answer.text, facts, whole)
                for expect, facts in zip(q["expect"], q["facts"], strict=True)
            ]
            full = all(v == RIGHT for v in verdicts)
            tally.multi_full += full
            verdict = RIGHT if full else "/".join(verdicts)
        if verdict != RIGHT:
            flat = answer.text.replace("\n", " ")
            tally.failures.append(f"{q['id']} {verdict}: {q['text']!r} -> {flat[:120]}")
    return tally


def load(name: str) -> tuple[list[dict[str, Any]], Path]:
    """A set's questions and its knowledge folder; SystemExit with one line when missing."""
    if name == SAMPLE:
        path, knowledge = SAMPLE_QUESTIONS, SAMPLE_KNOWLEDGE
    else:
        path, knowledge = CS_DATA / name / "questions.jsonl", CS_DATA / name / "knowledge"
    if not path.is_file() or not knowledge.is_dir():
        known = [SAMPLE, *(p.parent.name for p in sorted(CS_DATA.glob("*/questions.jsonl")))]
        raise SystemExit(f"no answer set {name!r} (sets: {', '.join(known)})")
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()], knowledge


def _share(n: int, total: int) -> str:
    return f"{n}/{total} ({n / total:.0%})" if total else "-"


def table(results: Sequence[tuple[str, Tally]]) -> str:
    head = f"{'set':<9}{'answerable':>11}{'right':>13}{'wrong':>13}{'declined':>13}"
    head += f"{'multi full':>14}{'out-of-scope declined':>23}{'greetings':>14}"
    rows = [head]
    for name, t in results:
        n = sum(t.single.values())
        rows.append(
            f"{name:<9}{n:>11}{_share(t.single[RIGHT], n):>13}{_share(t.single[WRONG], n):>13}"
            f"{_share(t.single[DECLINED], n):>13}{_share(t.multi_full, t.multi):>14}"
            f"{_share(t.outside_declined, t.outside):>23}"
            f"{_share(t.greetings_answered, t.greetings):>14}"
        )
    return "\n".join(rows)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    p.add_argument("--sets", default=SAMPLE, help="comma-separated sets (default: sample)")
    p.add_argument("-v", "--verbose", action="store_true", help="list every miss")
    p.add_argument(
        "--backend",
        choices=(MEMORY, POSTGRESQL),
        default=MEMORY,
        help="where the knowledge is searched (default: the in-process index)",
    )
    p.add_argument(
        "--database-url",
        default=PG_SERVER_URL,
        help="with --backend postgresql: a database on the server where a throwaway one is made",
    )
    return p


@contextlib.contextmanager
def pg_retriever(server_url: str, knowledge: Path) -> Iterator[Retriever]:
    """`knowledge` ingested into a fresh PostgreSQL database; the retriever a worker builds."""
    import psycopg
    from sqlalchemy import text
    from sqlalchemy.engine import make_url
    from sqlmodel import Session

    from bot.db.engine import get_engine
    from knowledge import lexical, store
    from knowledge.search import hybrid

    name = f"bot_answer_eval_{uuid.uuid4().hex[:10]}"
    server = make_url(server_url)
    admin_url = server.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SystemExit(f"cannot make a database at --database-url {server_url}: {first}") from exc
    engine = None
    try:
        engine = get_engine(server.set(database=name).render_as_string(hide_password=False))
        with Session(engine) as session:
            results = store.ingest_folder(session, "default", knowledge)
            failed = [r.source for r in results if r.outcome == store.FAILED_OUTCOME]
            if failed:
                raise SystemExit(f"could not load {', '.join(failed)} into PostgreSQL")
            # Planner statistics now, as autovacuum would make them a little later.
            session.execute(text(f"ANALYZE {lexical.LEX}, {lexical.TERMS}"))
            session.commit()
            yield hybrid.build(session, ["default"])
    finally:
        if engine is not None:
            engine.dispose()
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    names = [s.strip() for s in args.sets.split(",") if s.strip()]
    loaded = [(name, *load(name)) for name in names]
    results: list[tuple[str, Tally]] = []
    for name, items, knowledge in loaded:
        print(f"{name}: {len(items)} messages over {knowledge}", file=sys.stderr)
        if args.backend == POSTGRESQL:
            with pg_retriever(args.database_url, knowledge) as retriever:
                results.append((name, asyncio.run(run_set(Agent(None, retriever), items))))
        else:
            agent = Agent(None, KeywordRetriever.from_folder(knowledge))
            results.append((name, asyncio.run(run_set(agent, items))))
    where = "inside PostgreSQL" if args.backend == POSTGRESQL else "in-process index"
    print(f"No model: keyword search ({where}), the agent's answering policy (bot/agent/agent.py)")
    print(table(results))
    if args.verbose:
        for name, tally in results:
            for line in tally.failures:
                print(f"{name} {line}")


if __name__ == "__main__":
    main()
