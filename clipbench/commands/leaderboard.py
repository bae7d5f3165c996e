"""`clipbench leaderboard build | check | verify`: Markdown tables (and a web site) from checked result files."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape

from clipbench.commands.common import (load_plugins, seed_list)
from clipbench.errors import ClipbenchError


def add_parser(sub) -> None:
    board = sub.add_parser("leaderboard", help="build the Markdown leaderboards or check a submission",
                           description="build: the Markdown boards from the checked result files; check: validate "
                                       "result files before a pull request; verify: re-run a result's seeds.")
    board_sub = board.add_subparsers(dest="action", metavar="ACTION", required=True)
    build = board_sub.add_parser("build", help="leaderboards/results/*.json -> leaderboards/<suite>.md",
                                 description="Check every result file in --results and write one Markdown "
                                             "leaderboard per suite into --out, with each score's 95% interval.")
    build.add_argument("--results", type=Path, default=Path("leaderboards/results"),
                       help="folder of result files (default: %(default)s)")
    build.add_argument("--out", type=Path, default=Path("leaderboards"), help="default: %(default)s")
    mode = build.add_mutually_exclusive_group()
    mode.add_argument("--check-current", action="store_true",
                      help="write nothing; exit 1 if the Markdown differs from a fresh build (for CI)")
    mode.add_argument("--site", type=Path, default=None, metavar="DIR",
                      help="also write the board as a static web site into DIR (new, empty, or a site built "
                           "before): sortable tables, trade-off plots, a page per task and per method; opens "
                           "from disk with no network")
    chk = board_sub.add_parser("check", help="validate result files before submitting them",
                               description="Walk each result file's schema field by field (names, accuracy and "
                                           "chance ranges, costs, every task x seed cell once, the zero-shot "
                                           "reference, config_hash, the summary recomputed from the cells) and "
                                           "list at most 50 problems per file; exit 1 if any file has one.")
    chk.add_argument("files", nargs="+", type=Path, help="result files (e.g. leaderboards/results/*.json)")
    ver = board_sub.add_parser("verify", help="re-run a result's seeds from its stored config and compare",
                               description="Check a result file, then re-run its seeds from the stored config "
                                           "and compare every accuracy and the zero-shot reference.")
    ver.add_argument("file", type=Path)
    which = ver.add_mutually_exclusive_group()
    which.add_argument("--seeds", type=seed_list, default=None, metavar="LIST",
                       help="seeds to re-run, e.g. 2 or 1,3 (default: every seed of the result)")
    which.add_argument("--draw", action="store_true",
                       help="re-run seeds drawn at random by the verifier, enough (ceil(0.9 x seeds)) that a "
                            "single forged seed is caught with probability >= 0.9: every seed of a 3-seed result")
    ver.add_argument("--tolerance", type=_tolerance, default=None, metavar="POINTS",
                     help="a finite number >= 0 of points (and percent of a set's images) a re-run may differ by "
                          "(default: none, image by image exactly, where the environment matches the result's "
                          "device type, threads and torch version; else measured from the zero-shot reference "
                          "and stated)")
    ver.add_argument("--data", type=Path, default=None, metavar="ROOT",
                     help="root of the real datasets, for results on real-data suites (default: $CLIPBENCH_DATA_DIR)")


def _tolerance(text: str) -> float:
    import argparse
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number >= 0")
    return value


def main(args, console: Console) -> int:
    from clipbench import leaderboard, site, submission

    site_dir = None
    if args.action == "build" and args.site is not None:  # a bad DIR is said before any work
        site_dir = site.check_target(args.site)
    pm, registry = load_plugins()
    checks = dict(known_methods=dict(registry.methods), suites=registry.suites,
                  known_references=submission.shipped_references(), known_models=submission.known_models())
    if args.action == "verify":
        from clipbench import results, verify

        try:
            data = results.read_json(args.file)
        except results.ResultFileError as exc:
            raise ClipbenchError(str(exc)) from None
        problems = submission.check(data, **checks)
        if problems:
            raise ClipbenchError(f"{args.file} cannot be verified: {problems[0]} (`clipbench leaderboard check` "
                                 "lists every problem).")
        if not problems:
            seeds = verify.draw_seeds(data) if args.draw else args.seeds
            if args.draw:
                console.print(f"re-running seed(s) {', '.join(map(str, seeds))} (drawn at random: one forged "
                              f"seed is caught with probability >= {verify.DRAW_CATCH:g})", highlight=False)
            problems = verify.verify(data, registry, pm, seeds, args.tolerance, data_root=args.data,
                                     tell=lambda line: console.print(line, highlight=False, markup=False))
        for p in problems:
            console.print(f"  {p}", highlight=False, markup=False)
        console.print("[green]verified[/]" if not problems else f"[red]{len(problems)} problem(s)[/]")
        return 1 if problems else 0
    if args.action == "check":
        bad = 0
        for f in args.files:
            problems = submission.check_file(f, **checks)
            name = escape(str(f))
            if problems:
                bad += 1
                console.print(f"[red]{name}: {len(problems)} problem(s)[/]", highlight=False)
                for p in problems:
                    console.print(f"  {p}", highlight=False, markup=False)
            else:
                console.print(f"[green]{name}: ok[/]", highlight=False)
        return 1 if bad else 0
    if not args.results.is_dir():
        raise ClipbenchError(f"No result folder at {args.results}: put result files there "
                             "(clipbench run --out leaderboards/results).")
    if args.check_current:
        stale = leaderboard.stale_pages(args.results, args.out, **checks)
        if stale:
            console.print(f"[red]stale:[/] {escape(', '.join(stale))}; run `clipbench leaderboard build`",
                          highlight=False)
            return 1
        console.print("leaderboards are current")
        return 0
    if not args.out.is_dir():
        raise ClipbenchError(f"No leaderboard folder at {args.out}: create it or pass --out FOLDER.")
    entries = leaderboard.load_checked(args.results, **checks)
    boards = leaderboard.boards(entries)
    for path in leaderboard.write_pages(leaderboard.markdown_pages(boards), args.out):
        console.print(f"wrote {escape(str(path))}", highlight=False)
    if site_dir is not None:
        written = site.write(site.render(boards, checks["known_methods"]), site_dir)
        console.print(f"wrote the site: {escape(str(written[-1]))} ({len(written)} files)", highlight=False)
    return 0
