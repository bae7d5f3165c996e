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
    parser.add_argument("--version", action="version", version=version_line(),
                        help="print the version and where this clipbench is imported from, then exit")
    parser.add_argument("--debug", action="store_true",
                        help=f"show the full traceback behind an error sentence (or set {DEBUG_ENV}=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in dict.fromkeys(COMMANDS.values()):  # each module once, in order
        importlib.import_module(f"clipbench.commands.{module}").add_parser(sub)
    return parser


def version_line() -> str:
    """``clipbench 0.1.0 (/path/to/clipbench)``: which copy answers matters when a clone and an install differ."""
    from pathlib import Path

    import clipbench

    return f"clipbench {clipbench.__version__} ({Path(clipbench.__file__).resolve().parent})".replace("%", "%%")


DEBUG_ENV = "CLIPBENCH_DEBUG"  # set (to anything but 0) for the full traceback behind an error sentence

# what an interrupted command leaves behind, said when Ctrl-C stops it (others: nothing was changed)
INTERRUPTED = {
    "run": "Finished cells are saved; run the same command again to resume.",
    "tune": "Finished trials are saved; run the same command again to resume.",
    "pretrain": "Run the same command again to start over.",
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    for stream in (sys.stdout, sys.stderr):  # an ascii terminal shows "?" for "±", never a UnicodeEncodeError
        if stream is not None and hasattr(stream, "reconfigure") and not _encodes_unicode(stream):
            stream.reconfigure(errors="replace")
    # a batch log (stdout not a terminal, no COLUMNS) gets tables wide enough not to squash their numbers;
    # with stdout closed (`>&-`) there is no terminal either, and rich writes nowhere
    piped = (sys.stdout is None or not sys.stdout.isatty()) and "COLUMNS" not in os.environ
    console = Console(width=160) if piped else Console()
    err = Console(stderr=True)
    try:
        module = _module(args.command)
        return getattr(module, f"main_{args.command}", module.main)(args, console)
    except ClipbenchError as exc:
        if args.debug or os.environ.get(DEBUG_ENV, "0") not in ("", "0"):
            err.print_exception(show_locals=False)
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        if not args.debug and exc.__cause__ is not None and exc.debug_hint:
            err.print(f"(run with --debug or {DEBUG_ENV}=1 for the full traceback)", highlight=False)
        return 2
    except KeyboardInterrupt:
        err.print(f"[yellow]interrupted.[/] {INTERRUPTED.get(args.command, 'Nothing was left half-written.')}",
                  highlight=False)
        return 130


def _encodes_unicode(stream) -> bool:
    try:
        "±·—".encode(stream.encoding or "ascii")
        return True
    except (LookupError, UnicodeEncodeError):
        return False


if __name__ == "__main__":
    sys.exit(main())
