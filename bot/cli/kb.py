"""`bot kb add|list|rm|search`: manage the knowledge bases stored in the database."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from bot.cli import synonyms
from bot.logs import setup_logging
from bot.settings import Settings

if TYPE_CHECKING:
    from rich.console import Console
    from sqlmodel import Session

    from knowledge.store import IngestResult

DEFAULT_KB = "default"  # knowledge.store.DEFAULT_KB, without importing the database here
_PREVIEW_CHARS = 80
_TABLE_MAX_ROWS = 50  # `kb add` of more files prints the counts and the failures only
_KB_NAME_MAX = 64  # KnowledgeBase.name's column size
_EVAL_OPTIONS: dict[str, type] = {
    "--data": str,
    "--sets": str,
    "--limit": int,
    "--dense": str,
    "--model": str,
    "--api-key": str,
    "--dim": int,
    "--sim-floor": float,
    "--confidence": bool,
    "--k1": float,
    "--b": float,
    "--no-synonyms": bool,
    # Where the knowledge is searched: the in-process index, or inside PostgreSQL.
    "--backend": str,
    "--database-url": str,
    # What a customer sees without a model (benchmarks/answer_eval.py), not retrieval.
    "--answers": bool,
    "--verbose": bool,
}


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `kb` and its sub-commands on the `bot` parser."""
    kb = sub.add_parser(
        "kb", help="manage the knowledge base: add, list, rm, search, reindex, synonyms, eval"
    )
    kb_sub = kb.add_subparsers(dest="kb_command", required=True)
    add = kb_sub.add_parser(
        "add",
        help="add files or folders, in parallel (re-adding a file is a no-op; "
        "a run that was stopped resumes)",
    )
    add.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    add.add_argument(
        "--workers",
        type=int,
        help="processes reading files in parallel (default: the CPUs, at most 8)",
    )
    listing = kb_sub.add_parser("list", help="the documents of a knowledge base")
    rm = kb_sub.add_parser("rm", help="delete documents and all their chunks")
    rm.add_argument("documents", nargs="+", metavar="SOURCE_OR_ID")
    search = kb_sub.add_parser("search", help="ranked hits for a question, with scores")
    search.add_argument("query")
    search.add_argument("-k", type=int, default=5, help="how many hits (default 5)")
    reindex = kb_sub.add_parser(
        "reindex", help="(re)embed every document with the configured embedding model"
    )
    synonyms.add_parser(kb_sub)
    evaluate = kb_sub.add_parser(
        "eval",
        help="retrieval benchmark on the repo's customer-service sets, or --data DIR "
        "(R@1, R@5, MRR@10, latency); --answers: right / wrong / declined without a model",
    )
    # Forwarded to benchmarks/retrieval_eval.py, which documents them.
    for flag, kind in _EVAL_OPTIONS.items():
        if kind is bool:
            evaluate.add_argument(flag, action="store_true")
        else:
            evaluate.add_argument(flag, type=kind)
    for parser in (add, listing, rm, search, reindex):
        parser.add_argument(
            "--kb",
            type=_kb_name,
            default=DEFAULT_KB,
            help="knowledge base name (default: %(default)s)",
        )


def _kb_name(value: str) -> str:
    if not 0 < len(value) <= _KB_NAME_MAX:
        raise argparse.ArgumentTypeError(f"a name of 1 to {_KB_NAME_MAX} characters")
    return value


def cmd_kb(args: argparse.Namespace) -> int:
    """Run one `bot kb` sub-command against DATABASE_URL."""
    from sqlmodel import Session

    from bot.db.engine import get_engine

    if args.kb_command == "eval":
        return _eval(_eval_argv(args))
    settings = Settings.load()
    # The tables printed are the report; loaders' own warnings would only repeat them.
    setup_logging("ERROR")
    args.settings = settings
    handlers = {
        "add": _add,
        "list": _list,
        "rm": _rm,
        "search": _search,
        "reindex": _reindex,
        "synonyms": synonyms.run,
    }
    with Session(get_engine(settings.core.effective_database_url())) as session:
        return handlers[args.kb_command](session, args)


def _eval_argv(args: argparse.Namespace) -> list[str]:
    argv: list[str] = []
    for flag, kind in _EVAL_OPTIONS.items():
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if kind is bool and value:
            argv.append(flag)
        elif kind is not bool and value is not None:
            argv += [flag, str(value)]
    return argv


def _eval(argv: list[str]) -> int:
    """`bot kb eval [--data DIR] [--sets a,b] [--dense fake|URL] ...`: retrieval_eval.py."""
    import sys

    # The benchmarks live in the checkout the package was installed from (pip install -e).
    repo = Path(__file__).resolve().parents[2]
    if (repo / "benchmarks" / "retrieval_eval.py").is_file() and str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
    try:
        from benchmarks import answer_eval, retrieval_eval
    except ImportError:
        _console().print(
            "bot kb eval needs the source checkout's benchmarks/ (install with pip install -e)"
        )
        return 2
    try:
        if "--answers" in argv:
            answer_eval.main(_answer_argv(argv))
        else:
            retrieval_eval.main([a for a in argv if a != "--verbose"])
    except SystemExit as exc:  # argparse and the benchmark's own checks
        if isinstance(exc.code, str):
            _console().print(exc.code)
        return exc.code if isinstance(exc.code, int) else 1
    return 0


def _answer_argv(argv: list[str]) -> list[str]:
    """The flags answer_eval.py reads (--sets, --backend, --database-url, --verbose)."""
    kept = ["--verbose"] if "--verbose" in argv else []
    for flag in ("--sets", "--backend", "--database-url"):
        if flag in argv:
            kept += argv[argv.index(flag) : argv.index(flag) + 2]
    return kept


def _reindex(session: Session, args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from bot.wiring import embedder
    from knowledge import reindex

    console = _console()
    emb = embedder(args.settings)
    if emb is None:
        console.print("no embedding service configured: set EMBEDDING_BASE_URL and _MODEL")
        return 2
    progress = Progress(
        TextColumn("embedding"), BarColumn(), MofNCompleteColumn(), console=_stderr_console()
    )
    with progress:
        task = progress.add_task("reindex", total=None)
        result = reindex.reindex(
            session,
            args.kb,
            emb,
            on_progress=lambda d, t: progress.update(task, completed=d, total=t),
        )
    console.print(
        f"knowledge base {args.kb!r}: {result.documents} documents embedded "
        f"({result.vectors} vectors, model {emb.model}), {result.failed} failed"
        + (f": {result.error}" if result.error else "")
    )
    return 1 if result.failed else 0


def _console() -> Console:
    from rich.console import Console

    return Console(highlight=False)


def _add(session: Session, args: argparse.Namespace) -> int:
    import os

    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.table import Table
    from sqlalchemy.engine import Engine

    from bot.wiring import embedder
    from knowledge import ingest_job, store

    console = _console()
    emb = embedder(args.settings)
    jobs: list[tuple[Path, str]] = []
    for path in args.paths:
        jobs.extend(store.folder_files(path) if path.is_dir() else [(path, path.name)])
    workers = args.workers if args.workers is not None else min(os.cpu_count() or 1, 8)
    err = _stderr_console()
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("files, {task.fields[chunks]} chunks"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[source]}"),
        console=err,
        transient=True,
    )
    chunks = [0]
    engine = session.get_bind()
    if not isinstance(engine, Engine):  # pragma: no cover - the CLI's session has an engine
        raise TypeError(engine)

    with progress:
        task = progress.add_task("ingesting", total=len(jobs), source="", chunks=0)

        def on_result(result: IngestResult) -> None:
            chunks[0] += result.chunks if result.outcome != store.UNCHANGED else 0
            progress.update(task, advance=1, source=result.source, chunks=chunks[0])
            if result.outcome == store.FAILED_OUTCOME:
                progress.console.print(
                    f"failed: {escape(result.source)}: {escape(result.error)}", highlight=False
                )

        results = ingest_job.run(
            engine, args.kb, jobs, embedder=emb, workers=workers, on_result=on_result
        )
    if len(results) <= _TABLE_MAX_ROWS:
        table = Table(title=f"knowledge base {args.kb!r}")
        for column in ("source", "outcome", "chunks", "error"):
            table.add_column(column, overflow="fold")
        for result in results:
            table.add_row(result.source, result.outcome, str(result.chunks), result.error)
        console.print(table)
    counts = store.outcomes(results)
    console.print(
        ", ".join(f"{n} {outcome}" for outcome, n in counts.items())
        + f" ({chunks[0]} chunks written)"
    )
    return 1 if counts[store.FAILED_OUTCOME] else 0


def _list(session: Session, args: argparse.Namespace) -> int:
    from rich.table import Table

    from knowledge import store

    console = _console()
    documents = store.list_documents(session, args.kb)
    if not documents:
        console.print(f"knowledge base {args.kb!r} has no documents")
        return 0
    table = Table(title=f"knowledge base {args.kb!r}")
    for column in ("id", "source", "status", "chunks", "updated", "error"):
        table.add_column(column, overflow="fold")
    for doc in documents:
        table.add_row(
            str(doc.id),
            doc.source,
            doc.status,
            str(doc.chunk_count),
            doc.updated_at.strftime("%Y-%m-%d %H:%M:%S"),
            doc.error,
        )
    console.print(table)
    return 0


def _rm(session: Session, args: argparse.Namespace) -> int:
    from knowledge import store

    console = _console()
    code = 0
    for name in args.documents:
        removed = store.remove(session, args.kb, name)
        if removed is None:
            console.print(f"not found in {args.kb!r}: {name}")
            code = 1
        else:
            console.print(
                f"removed {removed.source} (id {removed.id}, {removed.chunk_count} chunks)"
            )
    return code


def _search(session: Session, args: argparse.Namespace) -> int:
    from rich.table import Table

    from bot.wiring import embedder, reranker, with_reranker
    from knowledge import synonym_table
    from knowledge.search import hybrid

    console = _console()
    synonym_table.refresh(session)  # the operator's synonyms, as the workers use them
    e = args.settings.embedding
    built = hybrid.build(
        session,
        [args.kb],
        embedder(args.settings),
        fusion=e.fusion,
        weight=e.fusion_weight,
        sim_floor=e.sim_floor,
    )
    if not len(built):
        console.print(f"knowledge base {args.kb!r} is empty; add documents with `bot kb add`")
        return 1
    hits = with_reranker(args.settings, built, reranker(args.settings)).search(args.query, k=args.k)
    if not hits:
        console.print("no hits")
        return 0
    table = Table(title=f"{args.query} ({args.kb!r})")
    for column in ("#", "score", "source", "section", "text"):
        table.add_column(column, overflow="fold")
    for rank, hit in enumerate(hits, 1):
        text = _preview(hit.text)
        if hit.answer is not None:
            text = f"Q: {text}\nA: {_preview(hit.answer)}"
        table.add_row(str(rank), f"{hit.score:.3f}", hit.source, hit.section, text)
    console.print(table)
    return 0


def _preview(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _PREVIEW_CHARS else flat[: _PREVIEW_CHARS - 1] + "…"


def _stderr_console() -> Console:
    from rich.console import Console

    return Console(stderr=True)


def load_sample_if_empty(settings: Settings) -> str | None:
    """On a database without the default knowledge base, load the knowledge folder into it.

    Returns a one-line summary to print, or None when there was nothing to do.
    """
    from sqlmodel import Session

    from bot.db.engine import get_engine
    from knowledge import store

    folder = settings.core.knowledge_dir
    if not folder.is_dir():
        return None
    with Session(get_engine(settings.core.effective_database_url())) as session:
        if store.knowledge_base(session, store.DEFAULT_KB) is not None:
            return None
        results = store.ingest_folder(session, store.DEFAULT_KB, folder)
    counts = store.outcomes(results)
    chunks = sum(r.chunks for r in results)
    failed = counts[store.FAILED_OUTCOME]
    return (
        f"Knowledge: loaded {counts[store.ADDED]} documents ({chunks} chunks) from {folder} "
        f"into knowledge base {store.DEFAULT_KB!r}"
        + (f", {failed} failed" if failed else "")
        + " (manage it with `bot kb`)"
    )
