"""Measure `KeywordRetriever` (BM25) on the retrieval dev sets in `shared/eval/`.

Run from the repository root::

    .venv/bin/python -m benchmarks.retrieval_eval               # both sets
    .venv/bin/python -m benchmarks.retrieval_eval --sets bq --confidence

Every corpus entry becomes an FAQ entry (the text is the question, its id the source), so
queries go through the real tokenizer, index and `search`. Metrics, as defined in
`shared/eval/README.md`: R@1, R@5 and MRR@10 over the whole corpus, and condensed acc@1:
the share of queries whose relevant entry scores strictly above all of its
`known_negatives` (a tie is a miss), over the queries that have known negatives (most
AFQMC queries have none; `judged` counts those that do). The data is read in place, never
copied.

`--dense fake` adds the dense and fused configurations: the corpus and the queries are
embedded through the real `HTTPEmbedder` against the fake embedding server
(`tests/fakes/embedding_server.py`, hashed character n-grams: lexical overlap in vector
form, NOT semantics, so these rows measure the fusion machinery, not what a real model
such as bge-m3 would give); `--dense URL --model NAME` uses a real OpenAI-compatible
endpoint instead. Queries are embedded in batches up front; the latency columns time
`search` (lexical) or `HybridRetriever.fuse` (the rest) per query, without the embedding
call.

`--confidence` also checks what `Hit.score` is for: the AUC with which the top hit's
confidence tells (a) a right top hit from a wrong one, and (b) a right top hit of this
set from the top hit of a query taken from the other set (off-topic for this corpus).
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

from knowledge.dense import DenseIndex
from knowledge.embedding import HTTPEmbedder, Vectors
from knowledge.hybrid import RRF, WEIGHTED, HybridRetriever
from knowledge.loaders import FaqEntry
from knowledge.retrieval import FAQ_BM25, FAQ_KEY, BM25Params, KeywordRetriever
from knowledge.tokenize import tokenize, tokenize_plain

DEFAULT_EVAL_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "eval"
SETS = ("bq", "afqmc")
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

    def rank(i: int) -> list[str]:
        found = hybrid.fuse(queries[i]["text"], query_vectors[i], 10)
        return [keyword.faqs[number].source for (_, number), _ in found]

    def confidence(i: int, entry: int) -> float:
        _, sims = hybrid.dense.search(query_vectors[i], 0, [entry])
        return hybrid.blend(keyword.tokens(queries[i]["text"]), sims, (FAQ_KEY, entry))

    return evaluate(name, config, keyword.faqs, build_s, queries, rank, confidence)


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


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    p.add_argument("--eval-dir", type=Path, default=DEFAULT_EVAL_DIR)
    p.add_argument("--sets", default=",".join(SETS), help="comma-separated: bq,afqmc")
    p.add_argument("--k1", type=float, default=FAQ_BM25.k1, help="BM25 k1 of the FAQ index")
    p.add_argument("--b", type=float, default=FAQ_BM25.b, help="BM25 b of the FAQ index")
    p.add_argument(
        "--no-synonyms", action="store_true", help="tokenize without `knowledge.synonyms`"
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
    return p


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    names = [s.strip() for s in args.sets.split(",") if s.strip()]
    for name in names:
        if name not in SETS:
            raise SystemExit(f"unknown set {name!r}; choose from {', '.join(SETS)}")
        if not (args.eval_dir / name / "dev" / "corpus.jsonl").is_file():
            raise SystemExit(f"no {name}/dev/corpus.jsonl under {args.eval_dir} (--eval-dir)")
    service = (
        fake_embedding_service(args.dim)
        if args.dense == "fake"
        else nullcontext(args.dense.rstrip("/"))
    )
    results: list[Result] = []
    notes = []
    with service as url:
        embedder = None
        if url:
            model = "fake" if args.dense == "fake" else args.model
            embedder = HTTPEmbedder(url, model, args.api_key, batch_size=64, timeout_s=60)
        for name in names:
            folder = args.eval_dir / name / "dev"
            corpus = read_jsonl(folder / "corpus.jsonl")
            queries = read_jsonl(folder / "queries.jsonl")
            if args.limit:
                queries = queries[: args.limit]
            retriever, build_s = build(corpus, args.k1, args.b, not args.no_synonyms)
            results.append(lexical(name, retriever, build_s, queries))
            if embedder is not None:
                results.extend(
                    _fused_results(name, retriever, build_s, corpus, queries, embedder, args)
                )
            if args.confidence:
                other = next(s for s in SETS if s != name)
                other_queries = read_jsonl(args.eval_dir / other / "dev" / "queries.jsonl")
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
            f"{r.name + '/dev':<10}{r.config:<16}{r.queries:>8}{r.r1:>8.3f}{r.r5:>8.3f}"
            f"{r.mrr10:>8.3f}{r.condensed:>8.3f}{r.judged:>8}{r.build_s:>9.1f}"
            f"{r.p50_ms:>8.2f}{r.p99_ms:>8.2f}"
        )
    for note in notes:
        print(note)


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
