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

`--confidence` also checks what `Hit.score` is for: the AUC with which the top hit's
confidence tells (a) a right top hit from a wrong one, and (b) a right top hit of this
set from the top hit of a query taken from the other set (off-topic for this corpus).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from knowledge.loaders import FaqEntry
from knowledge.retrieval import KeywordRetriever

DEFAULT_EVAL_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "eval"
SETS = ("bq", "afqmc")


@dataclass
class Result:
    name: str
    queries: int
    r1: float
    r5: float
    mrr10: float
    condensed: float
    judged: int
    build_s: float
    qps: float


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def build(corpus: Sequence[dict[str, Any]], k1: float, b: float) -> tuple[KeywordRetriever, float]:
    start = time.perf_counter()
    faqs = [FaqEntry(question=doc["text"], answer="", source=doc["id"]) for doc in corpus]
    retriever = KeywordRetriever(faqs=faqs, k1=k1, b=b)
    return retriever, time.perf_counter() - start


def evaluate(
    name: str, retriever: KeywordRetriever, build_s: float, queries: Sequence[dict[str, Any]]
) -> Result:
    position = {entry.source: i for i, entry in enumerate(retriever.faqs)}
    r1 = r5 = mrr = 0.0
    search_s = 0.0
    for query in queries:
        relevant = set(query["relevant"])
        start = time.perf_counter()
        hits = retriever.search(query["text"], k=10)
        search_s += time.perf_counter() - start
        ranked = [hit.source for hit in hits]
        r1 += bool(ranked[:1]) and ranked[0] in relevant
        r5 += bool(relevant.intersection(ranked[:5]))
        mrr += next((1.0 / (i + 1) for i, doc in enumerate(ranked) if doc in relevant), 0.0)
    condensed = 0
    judged = [q for q in queries if q["known_negatives"]]
    for query in judged:
        best = max(retriever.faq_confidence(query["text"], position[d]) for d in query["relevant"])
        negatives = [
            retriever.faq_confidence(query["text"], position[d]) for d in query["known_negatives"]
        ]
        condensed += all(best > score for score in negatives)
    n = len(queries)
    return Result(
        name,
        n,
        r1 / n,
        r5 / n,
        mrr / n,
        condensed / len(judged) if judged else float("nan"),
        len(judged),
        build_s,
        n / search_s if search_s else 0.0,
    )


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


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--eval-dir", type=Path, default=DEFAULT_EVAL_DIR)
    parser.add_argument("--sets", default=",".join(SETS), help="comma-separated: bq,afqmc")
    parser.add_argument("--k1", type=float, default=1.5)
    parser.add_argument("--b", type=float, default=0.75)
    parser.add_argument("--limit", type=int, default=0, help="use only the first N queries")
    parser.add_argument("--confidence", action="store_true", help="also report score AUCs")
    args = parser.parse_args(argv)

    names = [s.strip() for s in args.sets.split(",") if s.strip()]
    results = []
    notes = []
    for name in names:
        folder = args.eval_dir / name / "dev"
        corpus = read_jsonl(folder / "corpus.jsonl")
        queries = read_jsonl(folder / "queries.jsonl")
        if args.limit:
            queries = queries[: args.limit]
        retriever, build_s = build(corpus, args.k1, args.b)
        results.append(evaluate(name, retriever, build_s, queries))
        if args.confidence:
            other = next(s for s in SETS if s != name)
            other_queries = read_jsonl(args.eval_dir / other / "dev" / "queries.jsonl")
            sample = random.Random(0).sample(other_queries, min(1000, len(other_queries)))
            notes.append(f"{name}: {confidence_report(retriever, queries, sample)}")

    print(
        f"KeywordRetriever BM25 (k1={args.k1}, b={args.b}), tokens: jieba words + CJK uni/bigrams"
    )
    header = f"{'set':<10}{'queries':>8}{'R@1':>8}{'R@5':>8}{'MRR@10':>8}{'cond@1':>8}"
    print(header + f"{'judged':>8}{'build s':>9}{'q/s':>8}")
    for r in results:
        print(
            f"{r.name + '/dev':<10}{r.queries:>8}{r.r1:>8.3f}{r.r5:>8.3f}{r.mrr10:>8.3f}"
            f"{r.condensed:>8.3f}{r.judged:>8}{r.build_s:>9.1f}{r.qps:>8.0f}"
        )
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
