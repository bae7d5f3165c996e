"""The web leaderboard (`leaderboard build --site DIR`): the Markdown board's rows and numbers, escaped user
strings, no link off the site, a safe DIR; and, in a real headless Chromium opened on file:// URLs, no
console error, working sort, every row of the Markdown board with the same numbers."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from clipbench import leaderboard, site, submission
from clipbench.cli import main

ROOT = Path(__file__).resolve().parent.parent / "leaderboards"
HOSTILE = "<script>alert(1)</script>"


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def shipped():
    """The built-in methods and suites and the shipped registries (no third-party plugin)."""
    from clipbench.plugins import collect, get_plugin_manager

    reg = collect(get_plugin_manager(load_entrypoints=False))
    return dict(known_methods=dict(reg.methods), suites=reg.suites,
                known_references=submission.shipped_references(), known_models=submission.known_models())


@pytest.fixture(scope="module")
def committed(shipped, tmp_path_factory):
    """The committed board (leaderboards/results) as boards, and its site written to a folder."""
    entries = leaderboard.load_checked(ROOT / "results", **shipped)
    boards = leaderboard.boards(entries)
    out = tmp_path_factory.mktemp("site") / "site"
    site.write(site.render(boards, shipped["known_methods"]), out)
    return boards, out


def _rename(value, old: str, new: str):
    """``value`` with every dict key and string equal to ``old`` renamed (a name changed consistently)."""
    if isinstance(value, dict):
        return {(new if k == old else k): _rename(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_rename(v, old, new) for v in value]
    return new if value == old else value


@pytest.fixture(scope="module")
def hostile(shipped, tmp_path_factory):
    """A site of three committed rows with hostile names forced past the check (method, model, task, shift)
    and hostile provenance strings of the kind the check lets through."""
    files = sorted((ROOT / "results").glob("*.json"))
    picked = [f for f in files if any(f"__{m}__" in f.name for m in ("lp-ft", "saft", "zeroshot"))]
    evil = []
    for path in picked:
        data = json.loads(path.read_text())
        data = copy.deepcopy(data)
        if data["config"]["method"] == "saft":
            data = _rename(data, "saft", HOSTILE)
            data["provenance"]["method_citation"] = '<img src=x onerror=alert(2)> & "quoted"'
            data["provenance"]["<b>note</b>"] = "</dl></svg><script>alert(3)</script>"
        data = _rename(data, "animals", "</svg><script>alert(4)</script>")
        data = _rename(data, "lowres", "x' onmouseover='alert(5)")
        data["config"]["model"] = 'tiny"><img src=x onerror=alert(6)>'
        evil.append((path, data))
    boards = leaderboard.boards(evil)
    out = tmp_path_factory.mktemp("hostile") / "site"
    pages = site.render(boards, shipped["known_methods"])
    site.write(pages, out)
    return boards, pages, out


# ------------------------------------------------------------------ reading pages


class Node:
    def __init__(self, tag: str, attrs: dict, parent: "Node | None"):
        self.tag, self.attrs, self.parent, self.children = tag, attrs, parent, []

    def text(self) -> str:
        return " ".join("".join(c if isinstance(c, str) else c.text() + " " * (c.tag in ("td", "th"))
                                for c in self.children).split())

    def find(self, tag: str, **attrs) -> list["Node"]:
        out = []
        for c in self.children:
            if isinstance(c, Node):
                if c.tag == tag and all(c.attrs.get(k) == v for k, v in attrs.items()):
                    out.append(c)
                out += c.find(tag, **attrs)
        return out


VOID = {"meta", "link", "br", "hr", "img", "input", "source", "wbr"}


class Tree(HTMLParser):
    """A page as a tree of nodes (the standard library's parser: what a browser tokenises, not a regex)."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.root = self.node = Node("#root", {}, None)
        self.tags: list[tuple[str, dict]] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs), self.node)
        self.tags.append((tag, node.attrs))
        self.node.children.append(node)
        if tag not in VOID:
            self.node = node

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self.node.children.append(Node(tag, dict(attrs), self.node))

    def handle_endtag(self, tag):
        node = self.node
        while node.parent is not None and node.tag != tag:
            node = node.parent
        if node.parent is not None:
            self.node = node.parent

    def handle_data(self, data):
        self.node.children.append(data)


def markdown_tables(text: str) -> list[list[list[str]]]:
    """Every table of a Markdown page as rows of cells, markup removed (escapes undone, bold dropped, a
    [json](results/x) link as "json results/x")."""
    tables, current = [], None
    for line in text.splitlines():
        if not line.startswith("|"):
            current = None
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if set("".join(cells)) <= set("-:"):
            continue
        cells = [re.sub(r"\[json\]\((results/[^)]+)\)", r"json \1", re.sub(r"\\(.)", r"\1", c)).replace("**", "")
                 for c in cells]
        if current is None:
            current = []
            tables.append(current)
        current.append(cells)
    return tables


def html_rows(table: Node) -> list[list[str]]:
    """A table's header and body rows as cell texts; a link to a result file reads "json results/x"."""
    rows = []
    for tr in table.find("tr"):
        cells = []
        for cell in [c for c in tr.children if isinstance(c, Node) and c.tag in ("td", "th")]:
            links = cell.find("a")
            if links and links[0].attrs.get("href", "").startswith("results/"):
                cells.append(f"{cell.text()} {links[0].attrs['href']}")
            else:
                cells.append(cell.text())
        rows.append(cells)
    return rows


def section_table(page: Node, heading: str) -> Node:
    """The first table after the heading whose text starts with ``heading``."""
    seen = False
    for node in _walk(page):
        if node.tag in ("h1", "h2", "h3", "h4") and node.text().startswith(heading):
            seen = True
        elif seen and node.tag == "table":
            return node
    raise AssertionError(f"no table after {heading!r}")


def _walk(node: Node):
    for c in node.children:
        if isinstance(c, Node):
            yield c
            yield from _walk(c)


def page(out: Path, rel: str) -> Node:
    return Tree((out / rel).read_text()).root


# ------------------------------------------------------------------ the pages, without a browser


def test_every_markdown_row_is_on_the_site_with_the_same_numbers(committed):
    boards, out = committed
    markdown = (ROOT / "default.md").read_text()
    assert leaderboard.markdown_pages(boards)["default.md"] == markdown  # the site's boards are the committed
    tables = markdown_tables(markdown)
    board, neighbours, claims, task_tables = tables[0], tables[1], tables[2], tables[3:]
    index = page(out, "index.html")
    [table] = index.find("table", id="board-default")
    assert html_rows(table) == board
    assert len(board) - 1 == len(boards["default"].rows) == 16
    assert html_rows(section_table(index, "Neighbours in the ranking")) == neighbours
    assert html_rows(section_table(index, "Claims of the papers")) == [[c.replace("`", "") for c in r] for r in claims]
    names = re.findall(r"^## Task (\S+)", markdown, re.M)
    assert len(names) == len(task_tables) == 5
    for name, md_table in zip(names, task_tables):
        rows = html_rows(page(out, f"task/default/{name}.html").find("table")[0])
        header = rows[0]
        keep = [header.index(h) for h in md_table[0]]  # the task page adds a column per shift and probe
        assert [[r[i] for i in keep] for r in rows] == md_table, name


def test_every_pair_and_its_interval_are_shown(committed):
    boards, out = committed
    b = boards["default"]
    [sep] = b.separation
    cells = page(out, "index.html").find("td")
    apart = [c for c in cells if c.attrs.get("class") == "apart"]
    same = [c for c in cells if c.attrs.get("class") == "same"]
    seps = [s for board in boards.values() for s in board.separation]  # the index shows every board's pairs
    assert len(apart) == sum(s.separated for s in seps) and len(apart) + len(same) == sum(s.compared for s in seps)
    assert sep.compared == 120 and len(seps) == len(boards) == 2
    saft = page(out, "method/saft.html")
    rows = html_rows(section_table(saft, "Told apart from"))[1:]
    assert len(rows) == len(b.rows) - 1
    assert all(("saft −" in r[0] or "− saft" in r[0]) and r[3] in ("yes", "no") for r in rows)


def test_method_and_task_pages_carry_the_card_and_the_provenance(committed, shipped):
    boards, out = committed
    from clipbench import cards, store

    for row in boards["default"].rows:
        method = shipped["known_methods"][row.method]
        html_page = (out / f"method/{row.method}.html").read_text()
        tree = Tree(html_page).root
        reference, deviations = cards.card_of(method)
        card = tree.find("table", **{"class": "card"})
        assert len(card[0].find("tr")) - 1 == len(deviations) if deviations else not card
        text = tree.text()
        cfg = row.data["config"]
        for fact in (reference, store.run_id(row.data), row.data["config_hash"], cfg["model_fingerprint"],
                     *row.data["provenance"]["data"].values(), *row.data["provenance"]["versions"].keys()):
            assert fact in text, (row.method, fact)
        for task, values in cfg["tuned"].items():
            for key, value in values.items():
                assert json.dumps(value) in text and key in text
        assert (out / "results" / row.path.name).read_text() == json.dumps(row.data, indent=1, sort_keys=True) + "\n"


def test_hostile_names_and_provenance_are_inert(hostile):
    boards, pages, out = hostile
    for rel, text in pages.items():
        if not rel.endswith(".html"):
            continue
        tree = Tree(text)
        for tag, attrs in tree.tags:
            assert tag != "img", rel
            assert not any(a.startswith("on") for a in attrs), (rel, tag, attrs)
            if tag == "script":
                assert attrs == {"src": "../" * rel.count("/") + "assets/site.js"}, rel
    method_pages = [rel for rel in pages if rel.startswith("method/")]
    assert len(method_pages) == 3 and f"method/{site.slug(HOSTILE)}.html" in pages
    assert re.fullmatch(r"_[0-9a-f]{16}", site.slug(HOSTILE))
    evil = Tree(pages[f"method/{site.slug(HOSTILE)}.html"]).root.text()
    assert f"Method {HOSTILE}" in evil  # shown as text, exactly
    assert '<img src=x onerror=alert(2)> & "quoted"' in evil and "</dl></svg><script>alert(3)</script>" in evil
    index = Tree(pages["index.html"]).root.text()
    assert HOSTILE in index and 'tiny"><img src=x onerror=alert(6)>' in index
    assert all(p.resolve().is_relative_to(out.resolve()) for p in out.rglob("*"))


def test_no_link_leaves_the_site_and_every_link_lands(committed):
    """Offline from disk: no http(s), protocol-relative, data: or javascript: URL anywhere, and every
    relative link names a file of the site (and an id on that page, where it has a fragment)."""
    _, out = committed
    ids: dict[Path, set] = {}
    for html_file in sorted(out.rglob("*.html")):
        tree = Tree(html_file.read_text())
        for tag, attrs in tree.tags:
            for name in ("href", "src"):
                url = attrs.get(name)
                if url is None:
                    continue
                parts = urlsplit(url)
                assert not parts.scheme and not parts.netloc, (html_file.name, tag, url)
                target = (html_file.parent / parts.path).resolve() if parts.path else html_file
                assert target.is_file() and target.is_relative_to(out.resolve()), (html_file.name, url)
                if parts.fragment:
                    if target not in ids:
                        ids[target] = {a["id"] for _, a in Tree(target.read_text()).tags if "id" in a}
                    assert parts.fragment in ids[target], (html_file.name, url)
    text = "".join(p.read_text() for p in out.rglob("*") if p.suffix in (".html", ".css", ".js"))
    assert "http://" not in text and "https://" not in text and "fetch(" not in text
    assert "innerHTML" not in text and "@import" not in text


def test_rebuild_in_place_removes_only_its_own_stale_pages(committed, tmp_path, shipped):
    boards, _ = committed
    pages = site.render(boards, shipped["known_methods"])
    out = tmp_path / "site"
    site.write(pages, out)
    (out / "notes.txt").write_text("mine")
    assert (out / "method" / "saft.html").is_file()
    outside = sorted(p for p in tmp_path.iterdir())
    fewer = {rel: text for rel, text in pages.items() if "saft" not in rel and not rel.startswith("task/")}
    written = site.write(fewer, out)  # as if saft's row and every task had left the board
    assert written[-1] == out / "index.html" and len(written) == len(fewer)
    assert not (out / "method" / "saft.html").exists() and (out / "method" / "lp-ft.html").is_file()
    assert not list((out / "results").glob("*__saft__*")) and (out / "notes.txt").read_text() == "mine"
    assert not (out / "task").exists()  # the folders it made, emptied, go too
    assert sorted(p for p in tmp_path.iterdir()) == outside
    assert not [p for p in out.rglob("*.tmp")]
    assert json.loads((out / site.MANIFEST).read_text()) == sorted(fewer)


def test_bad_site_folder_is_one_sentence_before_any_work(tmp_path, monkeypatch, capsys):
    from clipbench.commands import leaderboard as command

    def no_work():
        raise AssertionError("work started before --site was checked")

    monkeypatch.setattr(command, "load_plugins", no_work)
    a_file = tmp_path / "site.html"
    a_file.write_text("x")
    assert main(["leaderboard", "build", "--site", str(a_file)]) == 2
    err = capsys.readouterr().err
    assert "is a file, not a folder" in err and err.strip().count("\n") == 0
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "thesis.tex").write_text("keep")
    assert main(["leaderboard", "build", "--site", str(busy)]) == 2
    assert "not a clipbench site" in capsys.readouterr().err
    assert [p.name for p in busy.iterdir()] == ["thesis.tex"]
    assert main(["leaderboard", "build", "--site", str(a_file / "sub")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["leaderboard", "build", "--site", str(tmp_path / "new"), "--check-current"])
    assert exc.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


def test_cli_writes_markdown_and_site_from_one_check(tmp_path, capsys):
    """`build --site` through the command: a submission with hostile provenance passes the check and its
    strings reach the site only as text."""
    results_dir = tmp_path / "results"
    results_dir.mkdir()
    for f in (ROOT / "results").glob("*.json"):
        if "__zeroshot__" in f.name or "__saft__" in f.name:
            data = json.loads(f.read_text())
            data["provenance"]["device_name"] = HOSTILE
            (results_dir / f.name).write_text(json.dumps(data))
    (tmp_path / "md").mkdir()
    assert main(["leaderboard", "build", "--results", str(results_dir), "--out", str(tmp_path / "md"),
                 "--site", str(tmp_path / "site")]) == 0
    assert "wrote the site" in capsys.readouterr().out
    saft = (tmp_path / "site" / "method" / "saft.html").read_text()
    assert HOSTILE not in saft and "&lt;script&gt;alert(1)&lt;/script&gt;" in saft
    assert (tmp_path / "md" / "default.md").is_file()


# ------------------------------------------------------------------ in a real browser

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")


@pytest.fixture(scope="module")
def browser():
    """Debian's headless Chromium through selenium and chromedriver; skipped, saying what is missing,
    where they are not installed (CI installs them: .ci/run)."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        if os.environ.get("CI") == "true":  # the README's test command installs the dev extra
            pytest.fail("selenium is not installed: the README's test command installs clipbench[dev]")
        pytest.skip("selenium is not installed (pip install -e '.[dev]'): the site is not tested in a browser")
    binary = next((shutil.which(b) for b in CHROMIUM if shutil.which(b)), None)
    driver = shutil.which("chromedriver")
    if binary is None or driver is None:
        pytest.skip("no headless Chromium here (apt-get install chromium chromium-driver): the site is not "
                    "tested in a browser")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(driver), options=options)
    yield d
    d.quit()


def load(browser, path: Path) -> list[dict]:
    """Open a page by its file:// URL; return the console messages of error level it produced."""
    browser.get(path.resolve().as_uri())
    browser.execute_script("return document.readyState")
    return [m for m in browser.get_log("browser") if m["level"] == "SEVERE"]


def table_rows(browser) -> list[list[str]]:
    return browser.execute_script("""
        return Array.from(document.querySelectorAll('#board-default tbody tr')).map(tr =>
            Array.from(tr.cells).map(td => {
                const a = td.querySelector('a');
                const text = td.innerText.replace(/\\s+/g, ' ').trim();
                return a && a.getAttribute('href').startsWith('results/') ? text + ' ' + a.getAttribute('href')
                                                                          : text;
            }));""")


def test_browser_index_matches_the_markdown_and_sorts(browser, committed):
    boards, out = committed
    assert load(browser, out / "index.html") == []
    assert browser.execute_script("return getComputedStyle(document.querySelector('header.top'))"
                                  ".backgroundColor") == "rgb(31, 78, 121)"  # the shipped stylesheet loaded
    board = markdown_tables((ROOT / "default.md").read_text())[0]
    assert table_rows(browser) == board[1:]  # every row, in ranking order, with the same numbers
    headers = browser.execute_script(
        "return Array.from(document.querySelectorAll('#board-default thead th')).map(th => th.innerText.trim())")
    assert [h.replace("↕", "").replace("▼", "").strip() for h in headers] == board[0]

    b = boards["default"]
    rank = {id(r): i for i, r in enumerate(b.rows)}
    by_name = {r.method: r for r in b.rows}

    def click(label: str) -> list:
        browser.execute_script("""
            for (const th of document.querySelectorAll('#board-default thead th'))
                if (th.innerText.replace(/[\\u2195\\u25b2\\u25bc]/g, '').trim() === arguments[0])
                    th.querySelector('button').click();""", label)
        order = [by_name[row[0]] for row in table_rows(browser)]
        assert sorted(table_rows(browser)) == sorted(board[1:])  # rows move whole
        return order

    def expected(key: str, descending: bool) -> list:
        return sorted(b.rows, key=lambda r: ((-1 if descending else 1) * r.cells[key].mean, rank[id(r)]))

    assert click("ID acc") == expected("id", True) != b.rows  # best first: highest ID accuracy
    assert browser.execute_script("return document.querySelector('#board-default th[aria-sort=descending]')"
                                  ".innerText").startswith("ID acc")
    assert click("ID acc") == expected("id", False)  # again: the other way
    assert click("probe forgetting") == expected("mean_forgetting", False)  # lower is better: lowest first
    assert [r.method for r in click("method")] == sorted(r.method for r in b.rows)
    assert click("score") == b.rows  # back to the ranking
    assert [m for m in browser.get_log("browser") if m["level"] == "SEVERE"] == []


def test_browser_every_page_loads_clean(browser, committed):
    boards, out = committed
    pages = sorted(out.rglob("*.html"))
    assert len(pages) == 1 + 16 + 5 * len(boards)  # the index, a page per method, a page per task of each board
    for p in pages:
        assert load(browser, p) == [], p.relative_to(out)
        assert browser.execute_script("return document.querySelectorAll('main h1').length") == 1
    load(browser, out / "task" / "default" / "shape.html")
    task = boards["default"].tasks[-1]
    assert browser.execute_script("return document.querySelectorAll('main table.sortable tbody tr').length") == \
        len(task.rows)
    before = browser.execute_script("return Array.from(document.querySelectorAll('main table.sortable tbody tr'))"
                                    ".map(tr => tr.cells[0].innerText)")
    browser.execute_script("document.querySelector('main table.sortable thead th button').click()")  # method
    after = browser.execute_script("return Array.from(document.querySelectorAll('main table.sortable tbody tr'))"
                                   ".map(tr => tr.cells[0].innerText)")
    assert after == sorted(before) != before


def test_browser_runs_no_hostile_string(browser, hostile):
    from selenium.common.exceptions import NoAlertPresentException

    boards, pages, out = hostile
    for rel in ("index.html", f"method/{site.slug(HOSTILE)}.html",
                f"task/default/{site.slug('</svg><script>alert(4)</script>')}.html"):
        assert load(browser, out / rel) == [], rel
        with pytest.raises(NoAlertPresentException):
            browser.switch_to.alert.text
        text = browser.execute_script("return document.body.innerText")
        assert HOSTILE in text or "alert(4)" in text, rel
        assert browser.execute_script("return document.querySelectorAll('img, script:not([src])').length") == 0


def test_an_index_of_several_boards_has_one_h1_and_each_suite_its_own_heading(committed):
    """Two shipped boards (default, default-b2n) on one index: one h1, a heading per suite, its sections below."""
    boards, out = committed
    index = page(out, "index.html")
    assert len(index.find("h1")) == 1 and len(boards) == 2
    suites = [h for h in index.find("h2") if h.attrs.get("id", "").startswith("suite-")]
    assert [h.attrs["id"] for h in suites] == [f"suite-{b}" for b in boards]
    claims_headings = [h for h in index.find("h3") if h.attrs.get("id", "").startswith("claims-")]
    assert len(claims_headings) == 2 and all(h.text().startswith("Claims of the papers") for h in claims_headings)
