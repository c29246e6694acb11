"""Measure `KeywordRetriever` (BM25) on retrieval evaluation sets.

Run from anywhere (or as `bot kb eval`)::

    .venv/bin/python -m benchmarks.retrieval_eval                      # the repo's own sets
    .venv/bin/python -m benchmarks.retrieval_eval --confidence
    .venv/bin/python -m benchmarks.retrieval_eval --data DIR --sets bq,afqmc

Two layouts are read. The repo's customer-service sets (`benchmarks/data/cs/<set>/`: a
knowledge folder and `questions.jsonl`, see its README) are indexed as the bot indexes a
knowledge base; each single question's expected source (an FAQ question or a document
section) is what must rank first. Pair sets in the BQ/AFQMC layout (`<set>/dev/corpus.jsonl`,
`queries.jsonl` with `relevant` and `known_negatives`; research data the user supplies with
`--data`) index every corpus entry as an FAQ entry (the text is the question, its id the
source). Metrics: R@1, R@5 and MRR@10, and for pair sets condensed acc@1: the share of
queries whose relevant entry scores strictly above all of its `known_negatives` (a tie is a
miss), over the queries that have known negatives (`judged`). Data is read in place.

`--dense fake` adds the dense and fused configurations on pair sets: the corpus and the
queries are embedded through the real `HTTPEmbedder` against the fake embedding server
(`tests/fakes/embedding_server.py`, hashed character n-grams: lexical overlap in vector
form, NOT semantics, so these rows measure the fusion machinery, not what a real model
such as bge-m3 would give); `--dense URL --model NAME` uses a real OpenAI-compatible
endpoint instead. The latency columns time `search` (lexical) or `HybridRetriever.fuse`
(the rest) per query, without the embedding call.

`--confidence` also checks what `Hit.score` is for: the AUC with which the top hit's
confidence tells a right top hit from a wrong one, and from the top hit of a question the
knowledge cannot answer (a customer-service set's out-of-scope questions; for pair sets,
queries of another set).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from knowledge.base import Hit
from knowledge.embedding import HTTPEmbedder, Vectors
from knowledge.loaders import FaqEntry
from knowledge.search.dense import DenseIndex
from knowledge.search.hybrid import RRF, WEIGHTED, HybridRetriever
from knowledge.search.retrieval import FAQ_BM25, FAQ_KEY, BM25Params, KeywordRetriever
from knowledge.text.tokenize import tokenize, tokenize_plain

DEFAULT_DATA = Path(__file__).resolve().parent / "data" / "cs"
# Kept aside for a final check: evaluated only when named (benchmarks/data/cs/README.md).
HELD_OUT = "heldout"
# (name, fusion, keyword weight) of the fused configurations measured with --dense.
FUSED = (
    ("dense only", WEIGHTED, 0.0),
    ("weighted w=0.3", WEIGHTED, 0.3),
    ("weighted w=0.5", WEIGHTED, 0.5),
    ("weighted w=0.7", WEIGHTED, 0.7),
    ("rrf", RRF, 0.5),
)


@dataclass
class Result:
    name: str
    config: str
    queries: int
    r1: float
    r5: float
    mrr10: float
    condensed: float
    judged: int
    build_s: float
    p50_ms: float
    p99_ms: float


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def build(
    corpus: Sequence[dict[str, Any]], k1: float, b: float, synonyms: bool = True
) -> tuple[KeywordRetriever, float]:
    start = time.perf_counter()
    faqs = [FaqEntry(question=doc["text"], answer="", source=doc["id"]) for doc in corpus]
    retriever = KeywordRetriever(
        faqs=faqs,
        faq_bm25=BM25Params(k1, b),
        tokenizer=tokenize if synonyms else tokenize_plain,
    )
    return retriever, time.perf_counter() - start


# rank(i) -> corpus ids best first; confidence(i, entry number) -> the entry's confidence.
Ranker = Callable[[int], list[str]]
Scorer = Callable[[int, int], float]


def evaluate(
    name: str,
    config: str,
    faqs: Sequence[FaqEntry],
    build_s: float,
    queries: Sequence[dict[str, Any]],
    rank: Ranker,
    confidence: Scorer,
) -> Result:
    position = {entry.source: i for i, entry in enumerate(faqs)}
    r1 = r5 = mrr = 0.0
    times: list[float] = []
    for i, query in enumerate(queries):
        relevant = set(query["relevant"])
        start = time.perf_counter()
        ranked = rank(i)
        times.append(time.perf_counter() - start)
        r1 += bool(ranked[:1]) and ranked[0] in relevant
        r5 += bool(relevant.intersection(ranked[:5]))
        mrr += next((1.0 / (i + 1) for i, doc in enumerate(ranked) if doc in relevant), 0.0)
    condensed = 0
    judged = [(i, q) for i, q in enumerate(queries) if q["known_negatives"]]
    for i, query in judged:
        best = max(confidence(i, position[d]) for d in query["relevant"])
        negatives = [confidence(i, position[d]) for d in query["known_negatives"]]
        condensed += all(best > score for score in negatives)
    n = len(queries)
    p50, p99 = np.percentile(np.asarray(times) * 1000, [50, 99]) if times else (0.0, 0.0)
    return Result(
        name,
        config,
        n,
        r1 / n,
        r5 / n,
        mrr / n,
        condensed / len(judged) if judged else float("nan"),
        len(judged),
        build_s,
        float(p50),
        float(p99),
    )


def lexical(
    name: str, retriever: KeywordRetriever, build_s: float, queries: Sequence[dict[str, Any]]
) -> Result:
    def rank(i: int) -> list[str]:
        return [hit.source for hit in retriever.search(queries[i]["text"], k=10)]

    def confidence(i: int, entry: int) -> float:
        return retriever.faq_confidence(queries[i]["text"], entry)

    return evaluate(name, "lexical", retriever.faqs, build_s, queries, rank, confidence)


def fused(
    name: str,
    config: str,
    hybrid: HybridRetriever,
    build_s: float,
    queries: Sequence[dict[str, Any]],
    query_vectors: Vectors,
) -> Result:
    keyword = hybrid.keyword
    if not isinstance(keyword, KeywordRetriever):  # pragma: no cover - built in memory here
        raise TypeError("fused configurations are measured in memory")

    def rank(i: int) -> list[str]:
        found = hybrid.fuse(queries[i]["text"], query_vectors[i], 10)
        return [keyword.faqs[number].source for (_, number), _ in found]

    def confidence(i: int, entry: int) -> float:
        _, sims = hybrid.dense.search(query_vectors[i], 0, [entry])
        return hybrid.blend(keyword.tokens(queries[i]["text"]), sims, (FAQ_KEY, entry))

    return evaluate(name, config, keyword.faqs, build_s, queries, rank, confidence)


@contextmanager
def pg_index(url: str, corpus: Sequence[dict[str, Any]]) -> Iterator[tuple[Any, list[int], float]]:
    """The corpus as FAQ entries of a throwaway knowledge base in PostgreSQL at `url`.

    Yields the `PgKeywordRetriever` over it, the chunk id of each corpus entry (in corpus
    order) and the time taken to tokenize and write it; the base is deleted afterwards.
    """
    import uuid

    from sqlalchemy import text
    from sqlmodel import Session

    from bot.db.engine import get_engine
    from knowledge import lexical, store
    from knowledge.models import FAQ, Document, KnowledgeChunk
    from knowledge.search.pg_keyword import PgKeywordRetriever

    engine = get_engine(url)
    name = f"eval-{uuid.uuid4().hex[:8]}"
    start = time.perf_counter()
    with Session(engine) as session:
        kb = store.knowledge_base(session, name, create=True)
        if kb is None or kb.id is None:  # pragma: no cover - made just above
            raise RuntimeError(f"knowledge base {name} could not be made")
        doc = Document(kb_id=kb.id, source="corpus.jsonl", chunk_count=len(corpus))
        session.add(doc)
        session.flush()
        lexical.ensure(session)
        rows = [
            KnowledgeChunk(document_id=doc.id or 0, kind=FAQ, position=i, text=d["text"], answer="")
            for i, d in enumerate(corpus)
        ]
        session.add_all(rows)
        session.flush()
        lexical.write(session, kb.id, rows)
        session.commit()
        # Statistics for the planner now, as autovacuum would make them a little later.
        session.execute(text(f"ANALYZE {lexical.LEX}, {lexical.TERMS}"))
        session.commit()
        chunk_ids = [row.id or 0 for row in rows]
        kb_id = kb.id
    build_s = time.perf_counter() - start
    try:
        yield PgKeywordRetriever(engine, [kb_id]), chunk_ids, build_s
    finally:
        with Session(engine) as session:
            store.remove(session, name, "corpus.jsonl")


def pg_lexical(
    name: str,
    retriever: Any,
    chunk_ids: Sequence[int],
    corpus: Sequence[dict[str, Any]],
    build_s: float,
    queries: Sequence[dict[str, Any]],
    rank_cd: bool = False,
) -> Result:
    """`lexical` for the PostgreSQL retriever (or, `rank_cd`, PostgreSQL's ts_rank_cd)."""
    from sqlalchemy import text

    from knowledge import lexical

    source = {chunk_id: doc["id"] for chunk_id, doc in zip(chunk_ids, corpus, strict=True)}
    faqs = [FaqEntry(question=doc["text"], answer="", source=doc["id"]) for doc in corpus]
    tokens = [retriever.tokens(q["text"]) for q in queries]

    def ts_rank_cd(i: int, where: str, params: dict[str, Any]) -> list[tuple[int, float]]:
        terms = sorted({t for t in tokens[i] if lexical.usable(t)})
        if not terms:
            return []
        query = " | ".join(lexical.quote(t) for t in terms)
        with retriever._engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT chunk_id, ts_rank_cd(terms, CAST(:q AS tsquery)) AS r "  # noqa: S608 - fixed filters
                    f"FROM {lexical.LEX} WHERE {where} AND kb_id = ANY(:kbs) "
                    "ORDER BY r DESC, chunk_id LIMIT 10"
                ),
                {"q": query, "kbs": retriever._kb_ids, **params},
            ).all()
        return [(int(c), float(r)) for c, r in rows]

    def rank(i: int) -> list[str]:
        if rank_cd:
            found = ts_rank_cd(i, "terms @@ CAST(:q AS tsquery)", {})
            return [source[c] for c, _ in found]
        return [source[number] for (_, number), _ in retriever.ranked(tokens[i], 10)]

    def confidence(i: int, entry: int) -> float:
        if rank_cd:
            found = ts_rank_cd(i, "chunk_id = :c", {"c": chunk_ids[entry]})
            return found[0][1] if found else 0.0
        return float(retriever.confidence_of(tokens[i], (FAQ_KEY, chunk_ids[entry])))

    config = "pg ts_rank_cd" if rank_cd else "pg lexical"
    return evaluate(name, config, faqs, build_s, queries, rank, confidence)


@contextmanager
def fake_embedding_service(dim: int) -> Iterator[str]:
    """The fake embedding server of the tests on loopback; yields its `/v1` URL."""
    from tests.fakes.base import serve
    from tests.fakes.embedding_server import EmbeddingFakeState, embedding_app

    with serve(embedding_app(EmbeddingFakeState(dim=dim, model="fake"))) as url:
        yield f"{url}/v1"


def auc(positives: Sequence[float], negatives: Sequence[float]) -> float:
    """P(a positive scores above a negative), ties counting half (Mann-Whitney)."""
    ranked = sorted([(v, 1) for v in positives] + [(v, 0) for v in negatives])
    rank_sum = 0.0
    i = 0
    while i < len(ranked):
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        average_rank = (i + j + 1) / 2
        rank_sum += average_rank * sum(label for _, label in ranked[i:j])
        i = j
    n1, n0 = len(positives), len(negatives)
    return (rank_sum - n1 * (n1 + 1) / 2) / (n1 * n0) if n1 and n0 else float("nan")


def confidence_report(
    retriever: KeywordRetriever,
    queries: Sequence[dict[str, Any]],
    other_queries: Sequence[dict[str, Any]],
) -> str:
    right: list[float] = []
    wrong: list[float] = []
    for query in queries:
        hits = retriever.search(query["text"], k=1)
        if hits:
            (right if hits[0].source in query["relevant"] else wrong).append(hits[0].score)
    off_topic = [hits[0].score for q in other_queries if (hits := retriever.search(q["text"], 1))]

    def median(values: list[float]) -> float:
        return sorted(values)[len(values) // 2] if values else float("nan")

    return (
        f"AUC right vs wrong top hit {auc(right, wrong):.3f}; "
        f"AUC right vs other set's top hit {auc(right, off_topic):.3f}; "
        f"median confidence: right {median(right):.3f}, wrong {median(wrong):.3f}, "
        f"other set {median(off_topic):.3f}"
    )


def hit_id(hit: Hit) -> str:
    """A hit as the id the customer-service sets use: an FAQ question or a document section."""
    if hit.answer is not None:
        return f"faq:{hit.text}"
    return f"doc:{hit.source}#{hit.section}"


def _expected_id(expect: dict[str, str]) -> str:
    if "faq" in expect:
        return f"faq:{expect['faq']}"
    return f"doc:{expect['doc']}#{expect['section']}"


def cs_queries(folder: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A customer-service set's single questions (with their expected source) and its
    out-of-scope questions (what the confidence must tell apart from right answers)."""
    questions = read_jsonl(folder / "questions.jsonl")
    singles = [
        {"id": q["id"], "text": q["text"], "relevant": [_expected_id(q["expect"][0])]}
        for q in questions
        if q["type"] == "single" and len(q["expect"]) == 1 and "none" not in q["expect"][0]
    ]
    off_topic = [q for q in questions if q["type"] == "out_of_scope"]
    for q in singles:
        q["known_negatives"] = []
    return singles, off_topic


def cs_lexical(
    name: str, retriever: KeywordRetriever, build_s: float, queries: Sequence[dict[str, Any]]
) -> Result:
    def rank(i: int) -> list[str]:
        return [hit_id(hit) for hit in retriever.search(queries[i]["text"], k=10)]

    return evaluate(name, "lexical", [], build_s, queries, rank, lambda _i, _e: 0.0)


def cs_confidence_report(
    retriever: KeywordRetriever,
    queries: Sequence[dict[str, Any]],
    off_topic: Sequence[dict[str, Any]],
) -> str:
    right: list[float] = []
    wrong: list[float] = []
    for query in queries:
        hits = retriever.search(query["text"], k=1)
        if hits:
            (right if hit_id(hits[0]) in query["relevant"] else wrong).append(hits[0].score)
    outside = [hits[0].score for q in off_topic if (hits := retriever.search(q["text"], 1))]
    return (
        f"AUC right vs wrong top hit {auc(right, wrong):.3f}; "
        f"AUC right vs out-of-scope top hit {auc(right, outside):.3f}"
    )


def available_sets(data: Path) -> list[str]:
    """The sets under `data`: customer-service sets (questions.jsonl) and pair sets
    (NAME/dev/corpus.jsonl, the BQ/AFQMC layout)."""
    found = [
        p.name
        for p in sorted(data.iterdir())
        if (p / "questions.jsonl").is_file() or (p / "dev" / "corpus.jsonl").is_file()
    ]
    return [name for name in found if name != HELD_OUT]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    p.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        help="folder of evaluation sets (default: the repo's benchmarks/data/cs)",
    )
    p.add_argument(
        "--sets", default="", help="comma-separated set names (default: every set in --data)"
    )
    p.add_argument("--k1", type=float, default=FAQ_BM25.k1, help="BM25 k1 of the FAQ index")
    p.add_argument("--b", type=float, default=FAQ_BM25.b, help="BM25 b of the FAQ index")
    p.add_argument(
        "--no-synonyms", action="store_true", help="tokenize without `knowledge.text.synonyms`"
    )
    p.add_argument("--limit", type=int, default=0, help="use only the first N queries")
    p.add_argument("--confidence", action="store_true", help="also report score AUCs")
    p.add_argument(
        "--dense",
        default="",
        metavar="fake|URL",
        help="also measure dense and fused rankings: 'fake' (the test fake) or a /v1 URL",
    )
    p.add_argument("--model", default="", help="embedding model name (with --dense URL)")
    p.add_argument("--api-key", default="", help="embedding API key (with --dense URL)")
    p.add_argument("--dim", type=int, default=256, help="fake embedding size (default 256)")
    p.add_argument("--sim-floor", type=float, default=0.3, help="cosine of dense confidence 0")
    p.add_argument(
        "--backend",
        choices=("memory", "postgresql"),
        default="memory",
        help="postgresql: also the keyword search inside PostgreSQL (pair sets; --database-url)",
    )
    p.add_argument(
        "--database-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="the PostgreSQL database of --backend postgresql (a throwaway base is made there)",
    )
    p.add_argument(
        "--pg-candidates",
        type=int,
        default=0,
        help="with --backend postgresql: the candidate postings budget (default: the retriever's)",
    )
    p.add_argument(
        "--pg-rank",
        choices=("bm25", "ts_rank_cd"),
        default="bm25",
        help="with --backend postgresql: also PostgreSQL's own ts_rank_cd (ts_rank_cd)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    data: Path = args.data
    if not data.is_dir():
        raise SystemExit(f"no evaluation sets at {data}: pass --data DIR")
    names = [s.strip() for s in args.sets.split(",") if s.strip()] or available_sets(data)
    for name in names:
        folder = data / name
        if not (
            (folder / "questions.jsonl").is_file() or (folder / "dev" / "corpus.jsonl").is_file()
        ):
            raise SystemExit(
                f"no set {name!r} under {data} (sets there: {', '.join(available_sets(data))})"
            )
    service = (
        fake_embedding_service(args.dim)
        if args.dense == "fake"
        else nullcontext(args.dense.rstrip("/"))
    )
    results: list[Result] = []
    notes: list[str] = []
    with service as url:
        embedder = None
        if url:
            model = "fake" if args.dense == "fake" else args.model
            embedder = HTTPEmbedder(url, model, args.api_key, batch_size=64, timeout_s=60)
        for name in names:
            if (data / name / "questions.jsonl").is_file():
                results.append(_cs_result(name, data / name, args, notes))
                if embedder is not None:
                    notes.append(f"{name}: dense rows are measured on pair sets only")
                continue
            folder = data / name / "dev"
            corpus = read_jsonl(folder / "corpus.jsonl")
            queries = read_jsonl(folder / "queries.jsonl")
            if args.limit:
                queries = queries[: args.limit]
            retriever, build_s = build(corpus, args.k1, args.b, not args.no_synonyms)
            results.append(lexical(name, retriever, build_s, queries))
            if args.backend == "postgresql":
                with pg_index(args.database_url, corpus) as (on_pg, chunk_ids, pg_build_s):
                    if args.pg_candidates:
                        on_pg.candidate_postings = args.pg_candidates
                    results.append(pg_lexical(name, on_pg, chunk_ids, corpus, pg_build_s, queries))
                    if args.pg_rank == "ts_rank_cd":
                        results.append(
                            pg_lexical(
                                name, on_pg, chunk_ids, corpus, pg_build_s, queries, rank_cd=True
                            )
                        )
            if embedder is not None:
                results.extend(
                    _fused_results(name, retriever, build_s, corpus, queries, embedder, args)
                )
            if args.confidence:
                others = [s for s in names if s != name and (data / s / "dev").is_dir()]
                if others:
                    other_queries = read_jsonl(data / others[0] / "dev" / "queries.jsonl")
                    sample = random.Random(0).sample(other_queries, min(1000, len(other_queries)))
                    notes.append(f"{name}: {confidence_report(retriever, queries, sample)}")
        if embedder is not None:
            embedder.close()
    synonyms = "without" if args.no_synonyms else "with"
    print(f"BM25 (k1={args.k1}, b={args.b}), tokens: jieba words + CJK uni/bigrams", end="")
    print(f", {synonyms} synonyms", end="")
    print(f"; dense: {args.dense} (dim {args.dim})" if args.dense else "")
    header = f"{'set':<10}{'config':<16}{'queries':>8}{'R@1':>8}{'R@5':>8}{'MRR@10':>8}"
    print(header + f"{'cond@1':>8}{'judged':>8}{'build s':>9}{'p50 ms':>8}{'p99 ms':>8}")
    for r in results:
        print(
            f"{r.name:<10}{r.config:<16}{r.queries:>8}{r.r1:>8.3f}{r.r5:>8.3f}"
            f"{r.mrr10:>8.3f}{r.condensed:>8.3f}{r.judged:>8}{r.build_s:>9.1f}"
            f"{r.p50_ms:>8.2f}{r.p99_ms:>8.2f}"
        )
    for note in notes:
        print(note)


def _cs_result(name: str, folder: Path, args: argparse.Namespace, notes: list[str]) -> Result:
    start = time.perf_counter()
    tokenizer = tokenize_plain if args.no_synonyms else tokenize
    retriever = KeywordRetriever.from_folder(folder / "knowledge", tokenizer=tokenizer)
    build_s = time.perf_counter() - start
    queries, off_topic = cs_queries(folder)
    if args.limit:
        queries = queries[: args.limit]
    if args.confidence:
        notes.append(f"{name}: {cs_confidence_report(retriever, queries, off_topic)}")
    return cs_lexical(name, retriever, build_s, queries)


def _fused_results(
    name: str,
    retriever: KeywordRetriever,
    build_s: float,
    corpus: Sequence[dict[str, Any]],
    queries: Sequence[dict[str, Any]],
    embedder: HTTPEmbedder,
    args: argparse.Namespace,
) -> list[Result]:
    start = time.perf_counter()
    matrix = embedder.embed([doc["text"] for doc in corpus])
    dense = DenseIndex(len(corpus), range(len(corpus)), matrix)
    dense_build_s = build_s + time.perf_counter() - start
    query_vectors = embedder.embed([q["text"] for q in queries])
    results = []
    for config, fusion, weight in FUSED:
        hybrid = HybridRetriever(
            retriever, dense, embedder, fusion=fusion, weight=weight, sim_floor=args.sim_floor
        )
        results.append(fused(name, config, hybrid, dense_build_s, queries, query_vectors))
    return results


if __name__ == "__main__":
    main()
