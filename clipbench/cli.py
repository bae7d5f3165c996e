"""The `clipbench` command: the parser and the dispatch; each command lives in ``clipbench/commands/``.

User mistakes end in one sentence on stderr and exit code 2, never a
traceback; an interrupted run says where its finished cells are saved.
"""

from __future__ import annotations

import importlib
import os
import sys

from rich.console import Console
from rich.markup import escape

from clipbench.commands import COMMANDS
from clipbench.commands.common import Parser
from clipbench.errors import ClipbenchError


def _module(name: str):
    return importlib.import_module(f"clipbench.commands.{COMMANDS[name]}")


def build_parser() -> Parser:
    parser = Parser(
        prog="clipbench",
        description="Benchmark parameter-efficient fine-tuning of CLIP: in-distribution gain, "
                    "robustness under shift, and forgetting of zero-shot skill.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in dict.fromkeys(COMMANDS.values()):  # each module once, in order
        importlib.import_module(f"clipbench.commands.{module}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    # a batch log (stdout not a terminal, no COLUMNS) gets tables wide enough not to squash their numbers
    piped = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    console = Console(width=160) if piped else Console()
    err = Console(stderr=True)
    try:
        module = _module(args.command)
        return getattr(module, f"main_{args.command}", module.main)(args, console)
    except ClipbenchError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        err.print("[yellow]interrupted.[/] Finished cells are saved; run the same command again to resume.")
        return 130


if __name__ == "__main__":
    sys.exit(main())
