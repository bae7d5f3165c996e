"""The leaderboard as a static web site: ``clipbench leaderboard build --site DIR``.

The pages render the very :class:`~clipbench.leaderboard.Board` objects the Markdown pages are
rendered from (the same checked files, every number computed once by :mod:`clipbench.scoring` and
formatted once by the leaderboard), so the two can never disagree.  A site must open from disk with no
network: file:// blocks ``fetch()`` and a CDN may be out of reach, so the data is in the HTML, the plots
are SVG drawn here, and the one stylesheet and script ship in the package (``assets/site``).  Every user
string (method, task, model names, a submission's provenance) goes through :func:`html.escape`; pages
are pure ASCII (other characters as references) whatever the locale; the script only reorders table rows
(no innerHTML), and a Content Security Policy runs no script but that file.

Writing stays inside DIR: every page is rendered before the first byte is written (a failure writes
nothing), each file is replaced atomically, and a manifest lets a rebuild remove the pages of rows that
left the board, and only those.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import os
import re
from pathlib import Path

from clipbench import cards, formatting, leaderboard, results, scoring, store
from clipbench.errors import ClipbenchError

ASSETS = Path(__file__).parent / "assets" / "site"
ASSET_FILES = ("site.css", "site.js", "favicon.svg")
MANIFEST = ".clipbench-site.json"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; base-uri 'none'; "
       "form-action 'none'")


def e(text) -> str:
    """A user string made inert in HTML text and attribute values."""
    return html.escape(str(text), quote=True)


def slug(name: str) -> str:
    """A file name for a page of ``name``: the name itself when it is a safe name, else a hash that no
    safe name can equal (safe names start with a letter or digit)."""
    if results.SAFE_NAME.fullmatch(name):
        return name
    return "_" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]


# ------------------------------------------------------------------ where the site goes


def check_target(out_dir: Path) -> Path:
    """DIR for the site, checked before any work: a folder that is new, empty, or a site built before."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ClipbenchError(f"--site {out} is a file, not a folder: pass a folder for the web site (it is "
                             "created if missing).")
    if out.is_dir():
        if any(out.iterdir()) and not (out / MANIFEST).is_file():
            raise ClipbenchError(f"--site {out} already holds files that are not a clipbench site: pass a new "
                                 "or empty folder (a site built there before is rebuilt in place).")
        if not os.access(out, os.W_OK | os.X_OK):
            raise ClipbenchError(f"--site {out} is not writable by this user.")
        return out.resolve()
    parent = out.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ClipbenchError(f"--site {out} cannot be created: {parent} is a file, not a folder.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ClipbenchError(f"--site {out} cannot be created: {parent} is not writable by this user.")
    return out.absolute()


def _inside(out: Path, rel: str) -> Path:
    path = (out / rel).resolve()
    if out.resolve() not in path.parents:
        raise ClipbenchError(f"Refusing to write {path}: outside {out}.")
    return path


def write(pages: dict[str, str], out_dir: Path) -> list[Path]:
    """Write the rendered site into ``out_dir``, file by file atomically; remove pages an earlier build of
    this site wrote that are no longer part of it.  Returns the paths written (index.html last)."""
    out = check_target(out_dir)
    old = _manifest(out)
    targets = {rel: _inside(out, rel) for rel in pages}  # every name checked before anything is written
    out.mkdir(parents=True, exist_ok=True)
    # first the manifest of old and new pages: a build cut short still leaves a folder known as this site
    results.write_atomic(out / MANIFEST, json.dumps(sorted(set(old) | set(pages)), indent=1) + "\n")
    written = []
    for rel in sorted(pages, key=lambda r: (r == "index.html", r)):
        path = targets[rel]
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_bytes() != pages[rel].encode("ascii"):
            results.write_atomic(path, pages[rel])
        written.append(path)
    for rel in sorted(set(old) - set(pages)):
        path = _inside(out, rel)
        if path.is_file():
            path.unlink()
            for folder in path.parents:  # folders this site made that are now empty
                if folder == out or any(folder.iterdir()):
                    break
                folder.rmdir()
    results.write_atomic(out / MANIFEST, json.dumps(sorted(pages), indent=1) + "\n")
    return written


def _manifest(out: Path) -> list[str]:
    try:
        names = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return []
    return [n for n in names if isinstance(n, str)] if isinstance(names, list) else []


# ------------------------------------------------------------------ the pages


def render(boards: dict[str, leaderboard.Board], methods: dict | None = None) -> dict[str, str]:
    """Relative path -> page text of the whole site (pure: the same boards give the same bytes).
    ``methods`` (name -> Method) gives the deviation cards; without it a method page says it has none."""
    pages = {f"assets/{name}": (ASSETS / name).read_text(encoding="ascii") for name in ASSET_FILES}
    by_method: dict[str, list[tuple[leaderboard.Board, int, leaderboard.Row]]] = {}
    for b in boards.values():
        for rank, row in enumerate(b.rows, 1):
            by_method.setdefault(row.method, []).append((b, rank, row))
            pages[f"results/{_result_name(row)}"] = json.dumps(row.data, indent=1, sort_keys=True,
                                                               allow_nan=False) + "\n"
        for task in b.tasks:
            pages[f"task/{slug(b.suite)}/{slug(task.name)}.html"] = _task_page(b, task)
    for name, rows in by_method.items():
        pages[f"method/{slug(name)}.html"] = _method_page(name, rows, (methods or {}).get(name))
    pages["index.html"] = _index_page(boards, sorted(by_method))
    return {rel: text.encode("ascii", "xmlcharrefreplace").decode("ascii") for rel, text in pages.items()}


def _result_name(row: leaderboard.Row) -> str:
    name = row.path.name
    return name if leaderboard.RESULT_FILE.fullmatch(name) else slug(name) + ".json"


def _run_anchor(row: leaderboard.Row) -> str:
    return f"run-{store.run_id(row.data)}"


def _page(title: str, depth: int, body: list[str]) -> str:
    up = "../" * depth
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)} - clipbench leaderboard</title>",
        f'<link rel="icon" href="{up}assets/favicon.svg" type="image/svg+xml">',
        f'<link rel="stylesheet" href="{up}assets/site.css">', "</head>", "<body>",
        f'<header class="top"><a class="brand" href="{up}index.html">clipbench leaderboard</a>'
        f'<nav><a href="{up}index.html">board</a><a href="{up}index.html#tasks">tasks</a>'
        f'<a href="{up}index.html#methods">methods</a></nav></header>',
        "<main>", *body,
        "<footer>Generated by <code>clipbench leaderboard build --site</code> from checked result files; every "
        "number is computed by <code>clipbench/scoring.py</code>, as on the Markdown board. This site needs no "
        "network.</footer>",
        "</main>", f'<script src="{up}assets/site.js"></script>', "</body>", "</html>", ""])


def _prose(text: str) -> str:
    """clipbench's own explanatory text (never user data) with its `code` and **bold** as HTML."""
    text = e(text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)


def _num(x) -> str:
    """A number for a data-sort attribute (the full stored value, so ties in the shown digits sort right)."""
    return repr(float(x))


def _th(label: str, kind: str | None, best: str = "", sort: str = "none", cls: str = "") -> str:
    """A column heading; ``kind`` "number" or "text" makes it a sort button, None leaves it plain."""
    klass = f' class="{cls}"' if cls else ""
    if kind is None:
        return f"<th{klass}>{e(label)}</th>"
    best_attr = f' data-best="{best}"' if best else ""
    return (f'<th{klass} data-type="{kind}"{best_attr} aria-sort="{sort}"><button type="button">{e(label)}'
            "</button></th>")


def _cell(cell: leaderboard.Cell) -> str:
    sort = f' data-sort="{_num(cell.mean)}"' if cell.mean is not None and math.isfinite(cell.mean) else ""
    text = f"<strong>{e(cell.text)}</strong>" if cell.best else e(cell.text)
    if cell.note:
        text += f' <span class="note">({e(cell.note)})</span>'
    if cell.interval:
        text += f' <span class="ci">{e(cell.interval)}</span>'
    return f"<td{sort}>{text}</td>"


def _model_html(row: leaderboard.Row) -> str:
    return e(row.model) + (' <span class="warn">(unknown weights)</span>' if row.unknown_weights else "")


def _board_table(b: leaderboard.Board) -> list[str]:
    head = [_th("method", "text", cls="text"), _th("model", "text", cls="text"),
            _th("hyper-parameters", "text", cls="text")]
    head += [_th(label, "number", "max" if pick is max else "min", "descending" if key == "score" else "none")
             for label, key, pick, _ in b.columns]
    head += [_th("seeds", "number", "max"), _th("result", None)]
    out = [f'<div class="scroll"><table class="sortable board" id="board-{slug(b.suite)}">',
           "<thead><tr>" + "".join(head) + "</tr></thead>", "<tbody>"]
    for rank, row in enumerate(b.rows):
        tds = [f'<td class="text" data-sort="{e(row.method)}"><a href="method/{slug(row.method)}.html#'
               f'{_run_anchor(row)}">{e(row.method)}</a></td>',
               f'<td class="text" data-sort="{e(row.model)}">{_model_html(row)}</td>',
               f'<td class="text" data-sort="{e(row.hyperparameters)}">{e(row.hyperparameters)}</td>']
        tds += [_cell(row.cells[key]) for _, key, _, _ in b.columns]
        tds += [f'<td data-sort="{row.seeds}">{row.seeds}</td>',
                f'<td><a href="results/{e(_result_name(row))}">json</a></td>']
        out.append(f'<tr data-rank="{rank}">' + "".join(tds) + "</tr>")
    out += ["</tbody></table></div>"]
    return out


def _label(row: leaderboard.Row, rows: list[leaderboard.Row]) -> str:
    """A row's name in a plot: the method, with the model where the board has several."""
    return row.method if len({r.model for r in rows}) == 1 else f"{row.method} / {row.model}"


def _index_page(boards: dict[str, leaderboard.Board], methods: list[str]) -> str:
    """The boards, one after another: one h1 for the page (a page has one), each suite under its own heading."""
    several = len(boards) > 1
    body = [f"<h1>Leaderboards: {e(', '.join(b.suite for b in boards.values()))}</h1>"] if several else []
    for b in boards.values():
        anchor = slug(b.suite)
        top = 2 if several else 1  # the suite's heading; its sections one level below
        body += [f'<h{top} id="suite-{anchor}">Leaderboard: {e(b.suite)} suite</h{top}>',
                 f'<p class="lead">{e(leaderboard.protocol_sentence(b))} Click a column heading to sort (best '
                 "first, again for the other way); best per column in bold; the score carries its 95% "
                 "interval.</p>",
                 '<details class="about"><summary>How to read this board</summary><p>' +
                 _prose(leaderboard.HEADER.format(margin=scoring.CHANCE_MARGIN,
                                                  replicates=scoring.BOOTSTRAP_REPLICATES)) + "</p></details>"]
        body += _board_table(b)
        body += [f'<h{top + 1} id="tradeoffs-{anchor}">Trade-offs</h{top + 1}>',
                 '<p class="lead">Each point is a row (mean over tasks of the seed means), its bars the std over '
                 "seeds; a hollow point has zero forgetting by construction (encoders untouched). Click a point "
                 "for its method page.</p>", '<div class="plots">',
                 _figure(b.rows, "id", "mean_forgetting", "ID accuracy vs probe forgetting", depth=0,
                         x_label="probe forgetting (points, lower is better)", y_label="ID accuracy (%)",
                         swap=True),
                 _figure(b.rows, "id", "mean_shift", "ID accuracy vs mean shift accuracy", depth=0,
                         x_label="ID accuracy (%)", y_label="mean shift accuracy (%)"),
                 "</div>"]
        body += _separation_html(b, top + 1) + _claims_html(b, top + 1)
    body.append('<h2 id="tasks">Tasks</h2>')
    for b in boards.values():
        if several:
            body.append(f"<h3>{e(b.suite)} suite</h3>")
        body.append('<ul class="cols">')
        body += [f'<li><a href="task/{slug(b.suite)}/{slug(t.name)}.html">{e(t.name)}</a></li>' for t in b.tasks]
        body.append("</ul>")
    body += ['<h2 id="methods">Methods</h2>', '<ul class="cols">']
    body += [f'<li><a href="method/{slug(m)}.html">{e(m)}</a></li>' for m in methods]
    body.append("</ul>")
    return _page("Leaderboard", 0, body)


def _separation_html(b: leaderboard.Board, level: int = 2) -> list[str]:
    out = []
    for sep in b.separation:
        title = f" ({e(sep.title)})" if sep.title else ""
        out += [f"<h{level}>Which differences are real{title}</h{level}>",
                f'<p class="lead">{_prose(leaderboard.separation_sentence(sep, "**"))}</p>',
                f"<h{level + 1}>Neighbours in the ranking</h{level + 1}>"] + _pairs_table(sep.neighbours, depth=0,
                                                                                         links=False)
        out += _matrix(b, sep, level + 1)
    return out


def _claims_html(b: leaderboard.Board, level: int = 2) -> list[str]:
    """The papers' claims as the Markdown board prints them (the same Board, every cell escaped)."""
    out = []
    for i, ct in enumerate(b.claims):
        title = f" ({e(ct.title)})" if ct.title else ""
        out += [f'<h{level} id="claims-{slug(b.suite)}{f"-{i + 1}" if i else ""}">Claims of the papers{title}'
                f'</h{level}>',
                f'<p class="lead">{_prose(leaderboard.CLAIMS_HEADER)}</p>', '<div class="scroll"><table>',
                "<thead><tr>" + "".join(_th(h, None, cls="" if h in ("#", "estimate [95%]") else "text")
                                        for h in leaderboard.CLAIMS_COLUMNS) + "</tr></thead>", "<tbody>"]
        for v in ct.verdicts:
            out.append(f"<tr><td>{v.number}</td>" + "".join(
                f'<td class="text">{_prose(x)}</td>' for x in (v.claim.statement, v.claim.source, v.comparison))
                + f'<td>{e(v.estimate)}</td><td class="text">{_prose(v.verdict)}</td></tr>')
        out += ["</tbody></table></div>", f"<h{level + 1}>How each claim was made testable</h{level + 1}>", "<ol>"]
        out += [f"<li>{_prose(v.claim.statement)}: {_prose(v.claim.testable)}</li>" for v in ct.verdicts]
        out.append("</ol>")
    return out


def _pairs_table(pairs: list[leaderboard.Pair], depth: int, links: bool = True) -> list[str]:
    """Pairs as the Markdown lists them: "a − b", the shown scores' difference, its paired 95% interval."""
    def name(row: leaderboard.Row) -> str:
        if not links:
            return e(row.method)
        return f'<a href="{"../" * depth}method/{slug(row.method)}.html#{_run_anchor(row)}">{e(row.method)}</a>'

    out = ['<div class="scroll"><table>', "<thead><tr>" + _th("pair", None, cls="text") +
           _th("score difference", None) + _th("95% interval", None) + _th("told apart", None, cls="text") +
           "</tr></thead>", "<tbody>"]
    for p in pairs:
        out.append(f'<tr><td class="text">{name(p.a)} &minus; {name(p.b)}</td><td>{e(p.difference)}</td>'
                   f'<td>{e(p.interval)}</td><td class="text">{"yes" if p.told_apart else "no"}</td></tr>')
    return out + ["</tbody></table></div>"]


def _matrix(b: leaderboard.Board, sep: leaderboard.Separation, level: int = 3) -> list[str]:
    """Every pair compared: row i against column j (i ranked above j), told apart in green."""
    group = [r for r in b.rows if any(r in (p.a, p.b) for p in sep.pairs)]
    pairs = {(id(p.a), id(p.b)): p for p in sep.pairs}
    if len(group) < 3:
        return []
    out = [f"<h{level}>Every pair</h{level}>",
           '<p class="lead">The score difference of the row method minus the column method (numbered as in the '
           "ranking); green where the paired 95% interval excludes zero. Hover a cell for its interval.</p>",
           '<div class="scroll"><table class="matrix"><thead><tr><th class="text">method</th>' +
           "".join(f'<th title="{e(r.method)}">{i}</th>' for i, r in enumerate(group, 1)) + "</tr></thead><tbody>"]
    for i, r in enumerate(group, 1):
        tds = []
        for j, c in enumerate(group, 1):
            p = pairs.get((id(r), id(c)))
            if p is None:
                tds.append('<td class="none"></td>')
                continue
            told = "told apart" if p.told_apart else "not told apart"
            tds.append(f'<td class="{"apart" if p.told_apart else "same"}" title="{e(r.method)} &minus; '
                       f'{e(c.method)}: {e(p.difference)} {e(p.interval)}, {told}">{e(p.difference)}</td>')
        out.append(f'<tr><th class="text">{i} {e(_label(r, group))}</th>' + "".join(tds) + "</tr>")
    out.append("</tbody></table></div>")
    return out


# ------------------------------------------------------------------ plots


def _figure(rows: list[leaderboard.Row], a: str, b: str, title: str, depth: int, x_label: str, y_label: str,
            swap: bool = False, task: str | None = None) -> str:
    """A scatter of two of the board's numbers per row (``swap``: ``b`` on the x axis), as inline SVG."""
    points = []
    for row in rows:
        stats = row.summary["tasks"][task] if task else row.summary["overall"]
        sa, sb = stats.get(a), stats.get(b)
        if not sa or not sb:
            continue
        x, y = (sb, sa) if swap else (sa, sb)
        tip = (f"{_label(row, rows)}: {x_label.split(' (')[0]} {formatting.mean_std(x, 1, row.seeds)}, "
               f"{y_label.split(' (')[0]} {formatting.mean_std(y, 1, row.seeds)}")
        points.append({"label": _label(row, rows), "tip": tip, "x": x["mean"], "y": y["mean"],
                       "xerr": x.get("std") or 0.0, "yerr": y.get("std") or 0.0,
                       "hollow": row.untouched and b == "mean_forgetting",
                       "href": f"{'../' * depth}method/{slug(row.method)}.html#{_run_anchor(row)}"})
    missing = len(rows) - len(points)
    better = "up and to the left" if swap else "up and to the right"
    caption = f"Better is {better}." + (f" {missing} row(s) without these numbers are not shown." if missing else "")
    return f"<figure>{scatter(points, title, x_label, y_label)}<figcaption>{caption}</figcaption></figure>"


W, H = 600, 430
LEFT, RIGHT, TOP, BOTTOM = 58, 18, 34, 50
CHAR = 6.2  # px per character of the 11px label font, for placing labels apart


def _axis(lo: float, hi: float, minimum: float = 4.0) -> tuple[float, float, list[float], int]:
    """A padded range at least ``minimum`` wide and round ticks in it (and their decimals)."""
    if hi - lo < minimum:
        mid = (lo + hi) / 2
        lo, hi = mid - minimum / 2, mid + minimum / 2
    pad = 0.06 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / 6
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(s * magnitude for s in (1, 2, 2.5, 5, 10) if s * magnitude >= raw)
    ticks, t = [], math.ceil(lo / step) * step
    while t <= hi + 1e-9:
        ticks.append(round(t, 10))
        t += step
    return lo, hi, ticks, max(0, -math.floor(math.log10(step)) + (1 if step / magnitude == 2.5 else 0))


def scatter(points: list[dict], title: str, x_label: str, y_label: str) -> str:
    """An SVG scatter with error bars and labels placed apart; every string escaped."""
    if not points:
        return f'<svg class="plot" viewBox="0 0 {W} 80"><text x="12" y="40">{e(title)}: no rows</text></svg>'
    x0, x1, xt, xd = _axis(min(p["x"] - p["xerr"] for p in points), max(p["x"] + p["xerr"] for p in points))
    y0, y1, yt, yd = _axis(min(p["y"] - p["yerr"] for p in points), max(p["y"] + p["yerr"] for p in points))

    def px(x: float) -> float:
        return LEFT + (x - x0) / (x1 - x0) * (W - LEFT - RIGHT)

    def py(y: float) -> float:
        return H - BOTTOM - (y - y0) / (y1 - y0) * (H - TOP - BOTTOM)

    def f(v: float) -> str:
        return f"{v:.1f}"

    out = [f'<svg class="plot" viewBox="0 0 {W} {H}" role="img" aria-label="{e(title)}">',
           f'<text class="title" x="{LEFT}" y="20">{e(title)}</text>']
    for t in xt:
        out.append(f'<line class="grid" x1="{f(px(t))}" y1="{TOP}" x2="{f(px(t))}" y2="{H - BOTTOM}"/>'
                   f'<text class="tick" x="{f(px(t))}" y="{H - BOTTOM + 15}" text-anchor="middle">'
                   f"{formatting.fixed(t, xd)}</text>")
    for t in yt:
        out.append(f'<line class="grid" x1="{LEFT}" y1="{f(py(t))}" x2="{W - RIGHT}" y2="{f(py(t))}"/>'
                   f'<text class="tick" x="{LEFT - 6}" y="{f(py(t) + 4)}" text-anchor="end">'
                   f"{formatting.fixed(t, yd)}</text>")
    out += [f'<line class="axis" x1="{LEFT}" y1="{H - BOTTOM}" x2="{W - RIGHT}" y2="{H - BOTTOM}"/>',
            f'<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{H - BOTTOM}"/>',
            f'<text x="{(LEFT + W - RIGHT) / 2:.1f}" y="{H - 12}" text-anchor="middle">{e(x_label)}</text>',
            f'<text transform="translate(16 {(TOP + H - BOTTOM) / 2:.1f}) rotate(-90)" text-anchor="middle">'
            f"{e(y_label)}</text>"]
    placed = [(px(p["x"]) - 4, py(p["y"]) - 4, px(p["x"]) + 4, py(p["y"]) + 4) for p in points]
    for p in points:
        cx, cy = px(p["x"]), py(p["y"])
        label_x, label_y, anchor = _place(p["label"], cx, cy, placed)
        far = math.hypot(label_x - cx, label_y - 4 - cy) > 24  # a label moved away gets a leader line
        edge = label_x if anchor != "middle" else cx
        leader = (f'<line class="leader" x1="{f(cx)}" y1="{f(cy)}" x2="{f(edge)}" y2="{f(label_y - 4)}"/>'
                  if far else "")
        out.append(
            f'<a href="{e(p["href"])}"><title>{e(p["tip"])}</title>'
            f'<line class="err" x1="{f(px(p["x"] - p["xerr"]))}" y1="{f(cy)}" x2="{f(px(p["x"] + p["xerr"]))}" '
            f'y2="{f(cy)}"/><line class="err" x1="{f(cx)}" y1="{f(py(p["y"] - p["yerr"]))}" x2="{f(cx)}" '
            f'y2="{f(py(p["y"] + p["yerr"]))}"/>'
            f'{leader}<circle class="dot{" hollow" if p["hollow"] else ""}" cx="{f(cx)}" cy="{f(cy)}" r="4"/>'
            f'<text x="{f(label_x)}" y="{f(label_y)}" text-anchor="{anchor}">{e(p["label"])}</text></a>')
    out.append("</svg>")
    return "".join(out)


def _place(label: str, cx: float, cy: float, placed: list[tuple]) -> tuple[float, float, str]:
    """Where a point's label goes: the nearest spot around it (rings of eight directions, further out each
    ring) that overlaps no label or point placed so far and stays in the plot, else the spot that overlaps
    least; the chosen box joins ``placed``."""
    w, h = CHAR * len(label), 11.0
    spots = []
    for ring in (0, 12, 26, 42):
        for dx, dy in ((1, 0), (-1, 0), (0, -1), (0, 1), (1, -1), (1, 1), (-1, -1), (-1, 1)):
            x = cx + dx * (7 + ring)
            y = cy + dy * (8 + ring) + (4 if dy == 0 else 8 if dy > 0 else 0)
            spots.append((x, y, "start" if dx > 0 else "end" if dx < 0 else "middle"))

    def box(spot):
        x, y, anchor = spot
        left = x if anchor == "start" else x - w if anchor == "end" else x - w / 2
        return left, y - h + 2, left + w, y + 2

    def overlap(b) -> float:
        area = sum(max(0.0, min(b[2], o[2]) - max(b[0], o[0])) * max(0.0, min(b[3], o[3]) - max(b[1], o[1]))
                   for o in placed)
        outside = b[0] < LEFT or b[2] > W - RIGHT or b[1] < TOP or b[3] > H - BOTTOM
        return area + (1e6 if outside else 0.0)

    best = next((s for s in spots if overlap(box(s)) == 0), None) or min(spots, key=lambda s: overlap(box(s)))
    placed.append(box(best))
    return best


# ------------------------------------------------------------------ task and method pages


def _task_page(b: leaderboard.Board, t: leaderboard.TaskTable) -> str:
    shifts = sorted({k[len("shift:"):] for _, n in t.rows for k in n if k.startswith("shift:")})
    probes = sorted({k[len("forgetting:"):] for _, n in t.rows for k in n if k.startswith("forgetting:")})
    body = [f'<p class="crumbs"><a href="../../index.html#suite-{slug(b.suite)}">{e(b.suite)} suite</a> / task</p>',
            f"<h1>Task {e(t.name)}</h1>"]
    excluded_all = set()
    for label, parts, excluded in t.references:
        text = "; ".join(f"{e(name)} {e(value)}" if isinstance(value, str) else
                         f"{e(name)} " + ", ".join(f"{e(k)} {e(v)}" for k, v in value) for name, value in parts)
        body.append(f'<p class="lead">Zero-shot reference{" of " + e(label) if label else ""}: {text}.</p>')
        if excluded:
            excluded_all |= set(excluded)
            body.append('<p class="lead">Left out of forgetting and the score: ' +
                        "; ".join(f"probe {e(p)} ({e(why)})" for p, why in excluded.items()) + ".</p>")
    cols = [("ID acc", "id", "max", "id")] + ([("new-class acc", "new", "max", "new")] if t.has_new else [])
    cols += [(f"acc on {s}", f"shift:{s}", "max", ("shifts", s)) for s in shifts]
    cols += [("mean shift acc", "mean_shift", "max", "mean_shift")]
    cols += [(f"forgetting of {p}" + (" (left out)" if p in excluded_all else ""), f"forgetting:{p}", "min",
              ("forgetting", p)) for p in probes]
    cols += [("probe forgetting", "mean_forgetting", "min", "mean_forgetting"), ("score", "score", "max", "score")]
    head = _th("method", "text", cls="text") + "".join(
        _th(label, "number", best, "descending" if key == "score" else "none") for label, key, best, _ in cols)
    body += ['<div class="scroll"><table class="sortable">', f"<thead><tr>{head}</tr></thead>", "<tbody>"]
    for i, (row, numbers) in enumerate(t.rows):
        s = row.summary["tasks"][t.name]
        tds = [f'<td class="text" data-sort="{e(row.method)}"><a href="../../method/{slug(row.method)}.html#'
               f'{_run_anchor(row)}">{e(_label(row, b.rows))}</a></td>']
        for _, key, _, where in cols:
            stat = s[where[0]].get(where[1]) if isinstance(where, tuple) else s.get(where)
            mean = stat.get("mean") if isinstance(stat, dict) else None
            sort = f' data-sort="{_num(mean)}"' if isinstance(mean, (int, float)) and math.isfinite(mean) else ""
            tds.append(f"<td{sort}>{e(numbers.get(key, '-'))}</td>")
        body.append(f'<tr data-rank="{i}">' + "".join(tds) + "</tr>")
    body += ["</tbody></table></div>", "<h2>Trade-offs on this task</h2>", '<div class="plots">',
             _figure([r for r, _ in t.rows], "id", "mean_forgetting", f"{t.name}: ID accuracy vs probe forgetting",
                     depth=2, x_label="probe forgetting (points, lower is better)", y_label="ID accuracy (%)",
                     swap=True, task=t.name),
             _figure([r for r, _ in t.rows], "id", "mean_shift", f"{t.name}: ID accuracy vs mean shift accuracy",
                     depth=2, x_label="ID accuracy (%)", y_label="mean shift accuracy (%)", task=t.name),
             "</div>"]
    return _page(f"Task {t.name} ({b.suite})", 2, body)


def _method_page(name: str, rows: list[tuple[leaderboard.Board, int, leaderboard.Row]], method) -> str:
    citation = getattr(method, "citation", None) or rows[0][2].data["provenance"].get("method_citation") or ""
    body = ['<p class="crumbs"><a href="../index.html#methods">methods</a></p>', f"<h1>Method {e(name)}</h1>"]
    if citation:
        body.append(f'<p class="lead">{e(citation)}</p>')
    body += ["<h2>Deviation card</h2>"] + _card(method)
    for b, rank, row in rows:
        body += _row_section(b, rank, row)
    return _page(f"Method {name}", 1, body)


def _card(method) -> list[str]:
    if method is None:
        return ['<p class="lead">This method is not registered in the clipbench that built this site, so its '
                "deviation card cannot be shown.</p>"]
    reference, deviations = cards.card_of(method)
    out = [f'<p class="lead">Compared against: {e(reference or "not stated")}</p>']
    if not deviations:
        return out + ['<p class="lead">No deviations declared.</p>']
    out += [f'<p class="lead">{e(cards.summary(deviations))}.</p>', '<div class="scroll"><table class="card">',
            "<thead><tr>" + "".join(f'<th class="text">{h}</th>' for h in ("aspect", "reference", "clipbench",
                                                                            "effect", "reason")) +
            "</tr></thead><tbody>"]
    for d in deviations:
        out.append("<tr>" + "".join(f"<td>{e(v)}</td>" for v in (d.aspect, d.reference, d.clipbench, d.effect,
                                                                  d.reason)) + "</tr>")
    return out + ["</tbody></table></div>"]


def _row_section(b: leaderboard.Board, rank: int, row: leaderboard.Row) -> list[str]:
    score = row.cells["score"]
    out = [f'<section id="{_run_anchor(row)}">',
           f'<h2><a href="../index.html#suite-{slug(b.suite)}">{e(b.suite)} suite</a>, {_model_html(row)}</h2>',
           f'<p class="lead">Rank {rank} of {len(b.rows)} by score: <strong>{e(score.text)}</strong> '
           f'<span class="ci">{e(score.interval)}</span> (95% interval). Hyper-parameters: '
           f"{e(row.hyperparameters)}.</p>",
           '<div class="scroll"><table>', "<thead><tr>" + "".join(_th(label, None) for label, *_ in b.columns) +
           "</tr></thead>", "<tbody><tr>" + "".join(_cell(row.cells[key]) for _, key, _, _ in b.columns) +
           "</tr></tbody></table></div>", "<h3>Per task</h3>"]
    tasks = [(t, n) for t in b.tasks for r, n in t.rows if r is row]
    has_new = any(t.has_new for t, _ in tasks)
    keys = [("ID acc", "id")] + ([("new-class acc", "new")] if has_new else []) + [
        ("mean shift acc", "mean_shift"), ("probe forgetting", "mean_forgetting"), ("score", "score")]
    out += ['<div class="scroll"><table>', "<thead><tr>" + _th("task", None, cls="text") +
            "".join(_th(label, None) for label, _ in keys) + "</tr></thead>", "<tbody>"]
    for t, numbers in tasks:
        out.append(f'<tr><td class="text"><a href="../task/{slug(b.suite)}/{slug(t.name)}.html">{e(t.name)}</a></td>'
                   + "".join(f"<td>{e(numbers.get(k, '-'))}</td>" for _, k in keys) + "</tr>")
    out.append("</tbody></table></div>")
    mine = [p for sep in b.separation for p in sep.pairs if row in (p.a, p.b)]
    if mine:
        out += ["<h3>Told apart from the other rows?</h3>",
                '<p class="lead">The paired bootstrap of the score difference against every row it was compared '
                "with (the row ranked higher first): told apart where the 95% interval excludes zero.</p>"]
        out += _pairs_table(mine, depth=1)
    out += ["<h3>Provenance</h3>", _provenance(row), "</section>"]
    return out


def _provenance(row: leaderboard.Row) -> str:
    data, cfg = row.data, row.data["config"]
    seeds = sorted({c["seed"] for c in data["cells"]})
    items = [("result file", f'<a href="../results/{e(_result_name(row))}">{e(_result_name(row))}</a>'),
             ("run hash", f'<span class="mono">{e(store.run_id(data))}</span>'),
             ("config hash", f'<span class="mono">{e(data.get("config_hash"))}</span>'),
             ("created", e(data.get("created", "-"))),
             ("model", f"{e(cfg['model'])} ({e(cfg['pretrained'])}), architecture {e(cfg['architecture'])}, "
                       f"precision {e(cfg.get('precision', 'fp32'))}"),
             ("model fingerprint", f'<span class="mono">{e(cfg["model_fingerprint"])}</span>' +
              (' <span class="warn">(unknown weights)</span>' if row.unknown_weights else " (known weights)")),
             ("shots, seeds", f"{e(cfg['shots'])} shots per class; seeds {e(', '.join(map(str, seeds)))}"),
             ("hyper-parameters", e(row.hyperparameters)),
             ("tuned values", _value(cfg.get("tuned")) if cfg.get("tuned") else "none (the paper's defaults)"),
             ("set by hand", _value(cfg.get("options")) if cfg.get("options") else "nothing"),
             ("method config" + (" (the tuned values replace these per task)" if cfg.get("tuned") else ""),
              _value(cfg.get("method_config"))),
             ("tasks", e(", ".join(map(str, cfg["tasks"]))))]
    prov = data["provenance"]
    order = ["versions", "data", "device", "device_name", "threads", "cpu_count", "tuning", "method_citation"]
    for key in order + sorted(k for k in prov if k not in order):
        if key in prov:
            items.append(({"data": "data fingerprints", "versions": "package versions"}.get(key, key),
                          _value(prov[key])))
    return '<dl class="prov">' + "".join(f"<dt>{e(k)}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def _value(v) -> str:
    """A free-form value (a submission's provenance or config) as escaped HTML; nested objects as lists."""
    if isinstance(v, dict):
        if not v:
            return "-"
        return '<dl class="prov">' + "".join(f"<dt>{e(k)}</dt><dd>{_value(x)}</dd>"
                                             for k, x in sorted(v.items(), key=lambda kv: str(kv[0]))) + "</dl>"
    if isinstance(v, list):
        if all(not isinstance(x, (dict, list)) for x in v):
            return e(", ".join(_scalar(x) for x in v)) or "-"
        return "<ol>" + "".join(f"<li>{_value(x)}</li>" for x in v) + "</ol>"
    return e(_scalar(v))


def _scalar(v) -> str:
    if isinstance(v, str):
        return v
    return json.dumps(v)
