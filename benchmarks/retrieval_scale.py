"""Knowledge retrieval at scale: ingestion rate, query latency and memory at ~100k chunks.

Run from the repository root::

    .venv/bin/python -m benchmarks.retrieval_scale                    # SQLite, 100k chunks
    .venv/bin/python -m benchmarks.retrieval_scale --db postgresql    # pgserver + pgvector
    .venv/bin/python -m benchmarks.retrieval_scale --chunks 20000 --dim 1024
    .venv/bin/python -m benchmarks.retrieval_scale --db postgresql --baseline   # before/after
    .venv/bin/python -m benchmarks.retrieval_scale --db postgresql --chunks 1000000 --keep DIR

`--keep DIR` keeps the corpus, the database and the ingestion figures in DIR; run again
with the same DIR, it skips straight to the worker's measurements (memory, latency, time to
searchable) over what is there, so a long ingestion (1M chunks) need not be repeated and the
queries can be timed on a quiet machine.

A synthetic corpus (Markdown files of `--per-file` sections, Chinese-like words drawn
from a Zipf-distributed vocabulary) goes through the real path: `ingest_job.run` (loaders,
chunking, embedding through `HTTPEmbedder` against the fake embedding server on
loopback, rows and vectors written), then `HybridRetriever.from_store`. Reported:

- ingestion: chunks per second, end to end (embedding included) and the embedding share,
  through `bot kb add`'s job (`--ingest job`, `--workers` reader processes; on PostgreSQL a
  bulk load: search indexes built after) or file by file (`--ingest serial`, the code
  before the jobs); `--baseline` first times the file-by-file ingestion of the same corpus
  into a database of its own, so both figures come from one run. The fake embedding
  service runs in a process of its own;
- query latency p50/p99 over `--queries` queries, single thread: lexical (BM25 `search`),
  dense (cosine top-k), fusion without the embedding call (`fuse`: lexical + dense +
  blend) and the whole `search` including the query's embedding over HTTP;
- resident memory (VmRSS) before and after building the index in this process, and its
  peak (VmHWM) during the build.

The fake's vectors are hashed character n-grams, not semantics: this measures speed and
size, not quality (that is `benchmarks/retrieval_eval.py`).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import multiprocessing
import multiprocessing.connection
import os
import random
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from knowledge import store
from knowledge.embedding import HTTPEmbedder


def vocabulary(size: int) -> list[str]:
    """The `size` most frequent 2-4 character words of jieba's own dictionary.

    Real words, so the tokenizer meets text it knows (random character soup would make
    jieba's HMM guess unknown words everywhere, ten times slower than real text).
    """
    import jieba

    path = Path(jieba.__file__).parent / "dict.txt"
    found: list[tuple[int, str]] = []
    for line in path.read_text("utf-8").splitlines():
        word, freq, *_ = line.split(" ")
        if 2 <= len(word) <= 4 and all("\u4e00" <= ch <= "\u9fff" for ch in word):
            found.append((int(freq), word))
    found.sort(reverse=True)
    return [word for _, word in found[:size]]


def write_corpus(folder: Path, chunks: int, per_file: int, seed: int) -> list[list[str]]:
    """Markdown files of `per_file` sections each; returns every section's words."""
    rng = random.Random(seed)
    vocab = vocabulary(20000)
    weights = [1.0 / (i + 1) for i in range(len(vocab))]  # Zipf: a few very common words
    sections: list[list[str]] = []
    for file_no in range(0, chunks, per_file):
        parts = []
        for i in range(file_no, min(file_no + per_file, chunks)):
            words = rng.choices(vocab, weights, k=rng.randint(30, 60))
            sections.append(words)
            sentences = ["".join(words[j : j + 10]) + "。" for j in range(0, len(words), 10)]
            parts.append(f"## 第{i}节 {words[0]}{words[1]}\n\n{''.join(sentences)}\n")
        (folder / f"doc{file_no // per_file:05d}.md").write_text("\n".join(parts), "utf-8")
    return sections


def queries_from(sections: Sequence[Sequence[str]], n: int, seed: int) -> list[str]:
    """Queries of 3-6 words of one section each, as a user would half-remember them."""
    rng = random.Random(seed + 1)
    return ["".join(rng.sample(list(rng.choice(sections)), rng.randint(3, 6))) for _ in range(n)]


def memory_mib() -> tuple[float, float]:
    """This process's resident size now and at its peak (VmRSS, VmHWM), in MiB."""
    found = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0]) / 1024
    return found.get("VmRSS", float("nan")), found.get("VmHWM", float("nan"))


def reset_peak() -> None:
    """Restart VmHWM from the current size, so the peak is the index build's own."""
    gc.collect()
    # Not Linux, or not allowed: the peak then covers ingestion too.
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def percentiles(times: Sequence[float]) -> tuple[float, float]:
    p50, p99 = np.percentile(np.asarray(times) * 1000, [50, 99])
    return float(p50), float(p99)


def timed(run: Callable[[int], object], n: int) -> tuple[float, float]:
    times = []
    for i in range(n):
        start = time.perf_counter()
        run(i)
        times.append(time.perf_counter() - start)
    return percentiles(times)


def _serve_embeddings(dim: int, port: multiprocessing.connection.Connection) -> None:
    """The fake embedding service, in a process of its own (it would share this one's GIL)."""
    import threading

    from tests.fakes.base import serve
    from tests.fakes.embedding_server import EmbeddingFakeState, embedding_app

    with serve(embedding_app(EmbeddingFakeState(dim=dim, model="fake"))) as url:
        port.send(url)
        threading.Event().wait()


@contextlib.contextmanager
def embedding_service(dim: int) -> Iterator[str]:
    """The URL of the fake embedding service, running in a child process."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    process = context.Process(target=_serve_embeddings, args=(dim, theirs), daemon=True)
    process.start()
    try:
        yield str(ours.recv())
    finally:
        process.kill()
        process.join()


def database_server(
    kind: str, workdir: Path, kept: bool = False
) -> tuple[Callable[..., str], Callable[[], None]]:
    """A function making a database by name (its URL), and one stopping the server.

    `kept`: the server's data lives in `workdir` under fixed names, and a database made
    with `fresh=False` is reused as it is (`--keep`); otherwise each run gets throwaway ones.
    """
    if kind == "sqlite":

        def make_file(name: str, fresh: bool = True) -> str:
            if fresh:
                for old in workdir.glob(f"{name}.db*"):
                    old.unlink()
            return f"sqlite:///{workdir}/{name}.db"

        return make_file, lambda: None
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

    # pgserver's socket path must stay short (108 bytes): a kept server lives in DIR/pg.
    folder = workdir / "pg" if kept else Path(tempfile.mkdtemp(prefix="pgs"))
    folder.mkdir(exist_ok=True)
    server = pgserver.get_server(folder, cleanup_mode="stop")
    suffix = "kept" if kept else uuid.uuid4().hex[:8]

    def make(name: str, fresh: bool = True) -> str:
        db = f"{name}_{suffix}"
        if fresh:  # a kept one of an ingestion that stopped half-way starts again
            server.psql(f'DROP DATABASE IF EXISTS "{db}";')
            server.psql(f'CREATE DATABASE "{db}";')
        return f"postgresql://postgres:@/{db}?host={folder}"

    return make, server.cleanup


def ingest(
    url: str, corpus: Path, embed_url: str, mode: str, workers: int
) -> tuple[list[store.IngestResult], float, float, float]:
    """Ingest the corpus into base "scale": results, seconds in all, embedding, index build.

    `mode` "job": `ingest_job.run` (what `bot kb add` does); "serial": file by file
    through `store.ingest`, the vector index kept (the code before the jobs).
    """
    from sqlmodel import Session

    from bot.db.engine import get_engine
    from knowledge import ingest_job, pgvector

    embedder = HTTPEmbedder(embed_url, "fake", batch_size=64, timeout_s=60)
    spent = {"embed": 0.0, "build": 0.0}
    original_embed, original_build = embedder.embed, pgvector.build_index

    def counting_embed(texts, **kw):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        try:
            return original_embed(texts, **kw)
        finally:
            spent["embed"] += time.perf_counter() - start

    def counting_build(engine, dim):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        try:
            original_build(engine, dim)
        finally:
            spent["build"] += time.perf_counter() - start

    embedder.embed = counting_embed  # type: ignore[method-assign]
    pgvector.build_index = counting_build  # type: ignore[assignment]
    engine = get_engine(url)
    start = time.perf_counter()
    try:
        if mode == "serial":
            with Session(engine) as session:
                results = store.ingest_folder(session, "scale", corpus, embedder=embedder)
        else:
            files = store.folder_files(corpus)
            results = ingest_job.run(engine, "scale", files, embedder=embedder, workers=workers)
    finally:
        pgvector.build_index = original_build  # type: ignore[assignment]
        embedder.close()
    return results, time.perf_counter() - start, spent["embed"], spent["build"]


def worker(args: argparse.Namespace) -> None:
    """The worker side, in a process of its own: memory, latency, time to searchable.

    Builds the knowledge index as a worker does (`KnowledgeIndex` over `hybrid.build`),
    first of the empty base then of the full one, and prints its figures as JSON.
    """
    import json

    from sqlmodel import Session

    from bot.db.engine import get_engine
    from knowledge.cache import KnowledgeIndex
    from knowledge.search import hybrid

    queries = json.loads(Path(args.worker_queries).read_text("utf-8"))
    engine = get_engine(args.worker)
    embedder = HTTPEmbedder(args.embed_url, "fake", batch_size=64, timeout_s=60)

    def build(session: Session, names: Sequence[str]) -> hybrid.HybridRetriever:
        found = hybrid.build(session, names, embedder)
        if not isinstance(found, hybrid.HybridRetriever):  # pragma: no cover - embedder given
            raise TypeError(found)
        return found

    empty = KnowledgeIndex(engine, ["empty"], build, max_age_s=0.0)
    for q in queries[:50]:  # the same code paths warmed up, over an empty base
        empty.search(q, 5)
    gc.collect()
    rss_empty, _ = memory_mib()
    reset_peak()
    # Checks the base's version on every call, as a worker does every few seconds.
    index = KnowledgeIndex(engine, ["scale"], build, max_age_s=0.0)
    start = time.perf_counter()
    retriever = index.current()
    build_s = time.perf_counter() - start
    if not isinstance(retriever, hybrid.HybridRetriever):  # pragma: no cover
        raise TypeError(retriever)
    gc.collect()
    rss_built, rss_peak = memory_mib()
    vectors = embedder.embed(queries)
    keyword = retriever.keyword
    tokens = [keyword.tokens(q) for q in queries]
    for q in queries[:20]:  # warm caches (jieba, BLAS, the database)
        retriever.search(q, 5)
    lexical = timed(lambda i: keyword.ranked(tokens[i], 50), len(queries))
    dense = timed(lambda i: retriever.dense.search(vectors[i], 50), len(queries))
    fused = timed(lambda i: retriever.fuse(queries[i], vectors[i], 5), len(queries))
    whole = timed(lambda i: retriever.search(queries[i], 5), len(queries))
    gc.collect()
    rss_queried, _ = memory_mib()
    # A new document: how long until this worker's next search finds it.
    with tempfile.TemporaryDirectory(prefix="kbnew") as tmp:
        # A model number and a name of their own each run: over a kept database the last
        # run's document is there already (the same file is skipped as unchanged, the same
        # text shown once).
        model = f"KX{uuid.uuid4().int % 10**8:08d}"
        new = Path(tmp) / f"new-{model}.md"
        new.write_text(f"## 新增文档\n\n蓝鲸牌空气炸锅 {model} 的保修期是三年。\n", "utf-8")
        start = time.perf_counter()
        with Session(engine) as session:
            store.ingest(session, "scale", new, embedder=embedder)
        ingested_s = time.perf_counter() - start
        while not any(h.source == new.name for h in index.search(f"{model} 保修", 5)):
            if time.perf_counter() - start > 120:
                raise SystemExit(f"the new document {new.name} was not found within 120 s")
            time.sleep(0.01)
        searchable_s = time.perf_counter() - start
    embedder.close()
    print(
        json.dumps(
            {
                "build_s": build_s,
                "rss_empty": rss_empty,
                "rss_built": rss_built,
                "rss_peak": rss_peak,
                "rss_queried": rss_queried,
                "lexical": lexical,
                "dense": dense,
                "fused": fused,
                "whole": whole,
                "dense_kind": type(retriever.dense).__name__,
                "keyword_kind": type(keyword).__name__,
                "ingested_s": ingested_s,
                "searchable_s": searchable_s,
            }
        )
    )


def disk_mib(url: str, db_file: Path | None, dim: int) -> dict[str, float]:
    """On-disk size of the stored knowledge and of the search indexes, in MiB."""
    if db_file is not None:
        size = sum(p.stat().st_size for p in db_file.parent.glob(db_file.name + "*"))
        return {"SQLite file (chunks, vectors)": size / 2**20}
    from sqlalchemy import text

    from bot.db.engine import get_engine
    from knowledge import lexical, pgvector

    found = {}
    with get_engine(url).connect() as conn:
        for label, table in (
            ("chunks (knowledgechunk)", "knowledgechunk"),
            ("vector blobs (chunkvector)", "chunkvector"),
            ("keyword index (knowledge_lex + GIN)", lexical.LEX),
            ("term frequencies (knowledge_lexterm)", lexical.TERMS),
            ("vector index (pgvector + HNSW)", pgvector.table(dim)),
        ):
            size = conn.execute(
                text("SELECT pg_total_relation_size(to_regclass(:t))"), {"t": table}
            ).scalar_one()
            found[label] = (size or 0) / 2**20
    return found


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--per-file", type=int, default=500)
    parser.add_argument("--dim", type=int, default=256, help="fake embedding size")
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--ingest",
        choices=("job", "serial"),
        default="job",
        help="job: bot kb add's parallel, batched job; serial: file by file (the code before)",
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="first time the serial ingestion of the same corpus into a database of its own",
    )
    parser.add_argument(
        "--keep",
        default="",
        metavar="DIR",
        help="keep corpus, database and ingestion figures in DIR; a second run reuses them",
    )
    # The worker process's own arguments (internal).
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)
    parser.add_argument("--worker-queries", default="", help=argparse.SUPPRESS)
    parser.add_argument("--embed-url", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return

    import json
    import subprocess
    import sys

    from sqlalchemy import text
    from sqlmodel import Session

    from bot.db.engine import dispose, get_engine
    from knowledge import lexical

    with contextlib.ExitStack() as stack:
        if args.keep:
            workdir = Path(args.keep).resolve()
            workdir.mkdir(parents=True, exist_ok=True)
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kbscale")))
        done = workdir / "ingested.json"
        ingested = json.loads(done.read_text("utf-8")) if done.exists() else None
        corpus = workdir / "corpus"
        if ingested is None:
            shutil.rmtree(corpus, ignore_errors=True)  # a run that stopped half-way
            corpus.mkdir()
            sections = write_corpus(corpus, args.chunks, args.per_file, args.seed)
            queries = queries_from(sections, args.queries, args.seed)
            (workdir / "queries.json").write_text(json.dumps(queries, ensure_ascii=False), "utf-8")
        else:
            print(f"reusing what {done} records: {ingested['stored']} chunks; no ingestion")
            queries = json.loads((workdir / "queries.json").read_text("utf-8"))
        make_db, stop_db = database_server(args.db, workdir, kept=bool(args.keep))
        try:
            with embedding_service(args.dim) as fake_url:
                baseline = None
                url = make_db("scale", fresh=ingested is None)
                if ingested is None:
                    if args.baseline:
                        base_url = make_db("before")
                        before = ingest(base_url, corpus, f"{fake_url}/v1", "serial", args.workers)
                        baseline = (sum(r.chunks for r in before[0]), *before[1:3])
                        dispose(base_url)
                    results, ingest_s, embed_s, build_s = ingest(
                        url, corpus, f"{fake_url}/v1", args.ingest, args.workers
                    )
                    engine = get_engine(url)
                    with Session(engine) as session:
                        store.knowledge_base(session, "empty", create=True)
                    if lexical.used(engine):
                        with engine.connect() as conn:  # as autovacuum would, a little later
                            conn.execute(text("ANALYZE"))
                            conn.commit()
                    dispose(url)
                    ingested = {
                        "stored": sum(r.chunks for r in results),
                        "files": len(results),
                        "ingest_s": ingest_s,
                        "embed_s": embed_s,
                        "build_s": build_s,
                        "baseline": baseline,
                    }
                    if args.keep:
                        done.write_text(json.dumps(ingested), "utf-8")
                stored, ingest_s = ingested["stored"], ingested["ingest_s"]
                embed_s, build_s, baseline = (
                    ingested["embed_s"],
                    ingested["build_s"],
                    ingested["baseline"],
                )
                figures = json.loads(
                    subprocess.run(
                        [
                            sys.executable,
                            "-m",
                            "benchmarks.retrieval_scale",
                            "--worker",
                            url,
                            "--worker-queries",
                            str(workdir / "queries.json"),
                            "--embed-url",
                            f"{fake_url}/v1",
                        ],
                        check=True,
                        capture_output=True,
                        text=True,
                    )
                    .stdout.strip()
                    .splitlines()[-1]
                )
                sizes = disk_mib(
                    url, workdir / "scale.db" if args.db == "sqlite" else None, args.dim
                )
                dispose(url)
        finally:
            stop_db()

    where = f"keyword {figures['keyword_kind']}, dense {figures['dense_kind']}"
    print(f"db={args.db} chunks={stored} files={ingested['files']} dim={args.dim} ({where})")
    if baseline is not None:
        n, seconds, embedded = baseline
        print(
            f"ingestion before (file by file, index kept): {seconds:.1f} s,"
            f" {n / seconds:.0f} chunks/s end to end (embedding {embedded:.1f} s of it)"
        )
    print(
        f"ingestion ({args.ingest}, {args.workers} readers): {ingest_s:.1f} s,"
        f" {stored / ingest_s:.0f} chunks/s end to end (embedding {embed_s:.1f} s of it,"
        f" vector index build {build_s:.1f} s)"
    )
    print(
        f"worker: index build {figures['build_s']:.2f} s; RSS over an empty knowledge base"
        f" {figures['rss_empty']:.0f} MiB -> {figures['rss_built']:.0f} MiB built,"
        f" {figures['rss_queried']:.0f} MiB after the queries"
        f" (+{figures['rss_queried'] - figures['rss_empty']:.0f} MiB;"
        f" peak during the build {figures['rss_peak']:.0f} MiB)"
    )
    print(
        f"new document: ingested in {figures['ingested_s']:.2f} s, found by this worker's"
        f" search {figures['searchable_s']:.2f} s after the ingest began"
    )
    print(f"query latency over {len(queries)} queries, ms (p50 / p99):")
    for name, key in (
        ("lexical top-50 (BM25)", "lexical"),
        ("dense top-50 (cosine)", "dense"),
        ("fusion, query vector given", "fused"),
        ("search incl. query embedding", "whole"),
    ):
        p50, p99 = figures[key]
        print(f"  {name:<30}{p50:>8.2f}{p99:>8.2f}")
    print("on disk, MiB:")
    for label, size in sizes.items():
        print(f"  {label:<40}{size:>8.0f}")


if __name__ == "__main__":
    main()
