"""`bot kb synonyms add|list|rm`: the operator's synonyms (`knowledge.synonym_table`).

Running workers pick a change up within a few seconds (their knowledge index looks at
the list's version when it looks at the documents'); nothing is re-indexed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlmodel import Session


def add_parser(kb_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `kb synonyms` and its sub-commands."""
    synonyms = kb_sub.add_parser(
        "synonyms",
        help="the operator's synonyms (product nicknames): add, list, rm; live, no reindex",
    )
    sub = synonyms.add_subparsers(dest="synonyms_command", required=True)
    add = sub.add_parser("add", help="add VARIANT STANDARD, or every 变体=标准词 line of --file")
    add.add_argument("variant", nargs="?", help="the word customers say, e.g. 扫地机")
    add.add_argument("standard", nargs="?", help="the word the documents say, e.g. 扫地机器人")
    add.add_argument("--file", type=Path, help="a UTF-8 file of variant=standard lines")
    sub.add_parser("list", help="every pair")
    rm = sub.add_parser("rm", help="remove the pairs of these variants")
    rm.add_argument("variants", nargs="+", metavar="VARIANT")


def run(session: Session, args: argparse.Namespace) -> int:
    """Run one `bot kb synonyms` sub-command; 0 ok, 1 something not done, 2 bad input."""
    from knowledge import synonym_table

    if args.synonyms_command == "list":
        pairs = synonym_table.load(session)
        for variant, standard in pairs.items():
            print(f"{variant}={standard}")
        if not pairs:
            print("no synonyms of your own yet (the built-in list always applies)")
        return 0
    if args.synonyms_command == "rm":
        code = 0
        for variant in args.variants:
            removed = synonym_table.remove(session, variant)
            if removed is None:
                print(f"not found: {variant}", file=sys.stderr)
                code = 1
            else:
                print(f"removed {removed.variant}={removed.canonical}")
        return code
    return _add(session, args)


def _add(session: Session, args: argparse.Namespace) -> int:
    from knowledge import synonym_table

    if args.file is not None:
        if args.variant is not None:
            print("give either VARIANT STANDARD or --file, not both", file=sys.stderr)
            return 2
        try:
            lines = args.file.read_text("utf-8").splitlines()
            pairs = synonym_table.parse_lines(lines)
        except (OSError, UnicodeDecodeError, synonym_table.SynonymError) as exc:
            print(f"{args.file}: {exc}", file=sys.stderr)
            return 2
    elif args.variant is None or args.standard is None:
        print("give VARIANT STANDARD (e.g. 扫地机 扫地机器人) or --file FILE", file=sys.stderr)
        return 2
    else:
        pairs = [(0, args.variant, args.standard)]
    code = 0
    for number, variant, standard in pairs:
        try:
            row = synonym_table.add(session, variant, standard)
        except synonym_table.SynonymError as exc:
            where = f"{args.file}:{number}: " if number else ""
            print(f"{where}{exc}", file=sys.stderr)
            code = 1
            continue
        print(f"added {row.variant}={row.canonical}")
    return code
