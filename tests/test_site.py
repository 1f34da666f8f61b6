"""The built book site, opened in a real headless browser (Debian's chromium) with no internet.

Needs `make book` first (`make site-test` runs both). Every page listed in _toc.yml is served from
localhost and loaded with every non-localhost request blocked, then checked: no JavaScript errors or
console errors, every plotly figure rendered (a WebGL canvas for 3D scenes), widget snapshots shown
where the page has widget views, math typeset by the local MathJax where the page has math. A link
check over every HTML file resolves internal links and #anchors. Screenshots go to test-output/site/.

HANDPOSE_SITE (default _build/html) and HANDPOSE_TOC (default _toc.yml) point it at another build.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

pytestmark = pytest.mark.book

ROOT = Path(__file__).resolve().parents[1]
SITE = Path(os.environ.get("HANDPOSE_SITE", ROOT / "_build" / "html"))
TOC = Path(os.environ.get("HANDPOSE_TOC", ROOT / "_toc.yml"))
OUT = ROOT / "test-output" / "site"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-unsafe-swiftshader",  # software WebGL for plotly's 3D scenes without a GPU
]
# Ignore the placeholder favicon request some chromium builds make.
IGNORED_CONSOLE = re.compile(r"favicon\.ico")


def toc_docnames(toc: Path = TOC) -> list[str]:
    """Every document named in a Jupyter Book _toc.yml (root, parts, chapters, sections), in order."""
    data = yaml.safe_load(toc.read_text())
    names = [data["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                names.append(
                    str(Path(entry["file"]).with_suffix(""))
                    if entry["file"].endswith(".md")
                    else entry["file"]
                )
            walk(entry.get("sections"))
            walk(entry.get("chapters"))

    walk(data.get("parts"))
    walk(data.get("chapters"))
    walk(data.get("sections"))
    return names


@pytest.fixture(scope="module")
def site() -> Path:
    if not (SITE / "index.html").is_file():
        pytest.fail(f"no built site at {SITE}: run `make book` first (or `make site-test`, which builds it)")
    shutil.rmtree(OUT, ignore_errors=True)  # screenshots of this run only
    OUT.mkdir(parents=True)
    return SITE


@pytest.fixture(scope="module")
def server(site):
    handler = functools.partial(QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - keep pytest output clean
        pass


@pytest.fixture(scope="module")
def browser():
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail(
            "chromium is not installed: run `make browser-deps` (as root) or `apt-get install chromium`"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_FLAGS)
        yield b
        b.close()


def _load(browser, url: str):
    """Open url offline; return the page and the problems seen while loading."""
    problems: list[str] = []
    page = browser.new_page(viewport={"width": 1280, "height": 900})

    def route(r):
        host = urlsplit(r.request.url).hostname
        if r.request.url.startswith(("data:", "blob:")) or host == "127.0.0.1":
            r.continue_()
        else:
            problems.append(f"request to the internet (the site must work offline): {r.request.url}")
            r.abort()

    page.route("**/*", route)
    page.on("pageerror", lambda e: problems.append(f"JavaScript error: {e}"))
    page.on(
        "console",
        lambda m: (
            problems.append(f"console {m.type}: {m.text}")
            if m.type == "error" and not IGNORED_CONSOLE.search(m.text)
            else None
        ),
    )
    page.on(
        "response",
        lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None,
    )
    page.goto(url, wait_until="load", timeout=120_000)  # the largest pages are 20-40 MB (plotly images)
    page.wait_for_load_state("networkidle")
    return page, problems


PLOTLY_STATE = """() => Array.from(document.querySelectorAll('.plotly-graph-div')).map(d => ({
  id: d.id,
  svg: !!d.querySelector('svg.main-svg'),
  scene: !!(d._fullLayout && Object.keys(d._fullLayout).some(k => /^scene\\d*$/.test(k))),
  canvas: !!d.querySelector('canvas'),
  nogl: !!d.querySelector('.no-webgl'),
}))"""


# html-manager renders each embedded view into a .widget-subarea inserted just before its <script>
WIDGETS_RENDERED = """() => Array.from(
  document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]')
).every(s => { const d = s.previousElementSibling;
  return d && d.classList.contains('widget-subarea') && d.querySelector('.jupyter-widgets'); })"""


@pytest.mark.parametrize("docname", toc_docnames())
def test_page_renders_offline(browser, server, site, docname):
    html_file = site / f"{docname}.html"
    assert html_file.is_file(), f"{docname} is in _toc.yml but {html_file} was not built"
    page, problems = _load(browser, f"{server}/{docname}.html")
    try:
        source = html_file.read_text(encoding="utf-8")
        # widgets: each embedded view replaced by a rendered widget
        n_views = source.count('type="application/vnd.jupyter.widget-view+json"')
        if n_views:
            page.wait_for_function(WIDGETS_RENDERED, timeout=30_000)
        # plotly, after the widgets (an Output widget may hold figures): every figure drawn,
        # 3D scenes with a WebGL canvas
        if "plotly-graph-div" in source:
            page.wait_for_function(
                "() => Array.from(document.querySelectorAll('.plotly-graph-div'))"
                ".every(d => d.querySelector('svg.main-svg'))",
                timeout=30_000,
            )
            figs = page.evaluate(PLOTLY_STATE)
            assert figs, f"{docname}: the HTML has plotly figures but none is on the page"
            for f in figs:
                assert f["svg"], f"{docname}: plotly figure {f['id']} did not render"
                if f["scene"]:
                    assert f["canvas"] and not f["nogl"], (
                        f"{docname}: 3D figure {f['id']} has no WebGL canvas"
                    )
            # image traces hold a compressed data URI (viz.image_trace): each one drawn, with a size
            n_img = source.count('"source":"data:image\\u002f')  # figure JSON escapes "/"
            if n_img:
                drawn = page.evaluate(
                    "() => Array.from(document.querySelectorAll('.plotly image')).filter(i => "
                    "(i.getAttribute('href') || i.getAttribute('xlink:href') || '')"
                    ".startsWith('data:image/') "
                    "&& i.getBBox().width > 10 && i.getBBox().height > 10).length"
                )
                assert drawn > 0, f"{docname}: plotly image traces in the HTML, none drawn on the page"
            for i, f in enumerate(x for x in figs if x["scene"]):
                page.locator(f"[id='{f['id']}']").screenshot(path=str(OUT / f"{_slug(docname)}-3d-{i}.png"))
        # math: typeset by MathJax (served from the site)
        if re.search(r'class="math[ "]', source):
            page.wait_for_function(
                "() => document.querySelectorAll('mjx-container').length > 0", timeout=30_000
            )
            errors = page.evaluate("() => document.querySelectorAll('mjx-merror, [data-mjx-error]').length")
            assert errors == 0, f"{docname}: MathJax reported {errors} TeX errors"
        page.screenshot(path=str(OUT / f"{_slug(docname)}.png"), full_page=False)
    finally:
        page.close()
    assert not problems, f"{docname}:\n" + "\n".join(problems)


def _slug(docname: str) -> str:
    OUT.mkdir(parents=True, exist_ok=True)
    return docname.replace("/", "_")


# ---------------------------------------------------------------------------------------------
# link check: every internal href/src in every HTML file resolves, and so does its #anchor


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[tuple[str, str]] = []  # (tag, url)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("id", "name") if tag == "a" else ("id",):
            if a.get(key):
                self.ids.add(a[key])
        if tag == "a" and a.get("href"):
            self.links.append((tag, a["href"]))
        elif tag in ("img", "script", "iframe", "source") and a.get("src"):
            self.links.append((tag, a["src"]))
        elif tag == "link" and a.get("href") and a.get("rel") != "canonical":
            self.links.append((tag, a["href"]))


@functools.cache
def _parse(path: Path) -> _Links:
    p = _Links()
    p.feed(path.read_text(encoding="utf-8", errors="replace"))
    return p


def broken_links(site: Path) -> list[str]:
    """Internal links (and anchors) in site's HTML that do not resolve; external assets that need internet."""
    problems = []
    for html in sorted(site.rglob("*.html")):
        # _static holds theme templates (not pages); offline/ holds vendored files
        if html.relative_to(site).parts[0] in ("_sources", "_static", "offline"):
            continue
        for tag, url in _parse(html).links:
            parts = urlsplit(url)
            if parts.scheme in ("mailto", "javascript", "data", "tel"):
                continue
            if parts.scheme or url.startswith("//"):
                if tag != "a":
                    problems.append(f"{html.relative_to(site)}: <{tag}> loads {url} from the internet")
                continue
            target = html if not parts.path else (html.parent / unquote(parts.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                problems.append(f"{html.relative_to(site)}: broken link {url}")
                continue
            frag = unquote(parts.fragment)
            if frag and target.suffix == ".html" and frag not in _parse(target).ids:
                problems.append(f"{html.relative_to(site)}: missing anchor {url}")
    return problems


def test_internal_links_and_anchors_resolve(site):
    problems = broken_links(site)
    assert not problems, f"{len(problems)} broken links:\n" + "\n".join(problems[:50])


TABLE_AS_TEXT = re.compile(r"\|\s*(?:-{3,}|\u2014+)\s*\|")  # "|---|" or, after smart quotes, "|\u2014|"


def tables_shown_as_text(html: str) -> int:
    """Markdown table separator rows left as text in a page (code blocks excluded): a table a
    code cell printed with ``IPython.display.Markdown`` that was not parsed as a table."""
    text = re.sub(r"<pre.*?</pre>|<code.*?</code>", "", html, flags=re.S)
    return len(TABLE_AS_TEXT.findall(text))


def test_printed_markdown_tables_render_as_tables(site):
    bad = {d: n for d in toc_docnames() if (n := tables_shown_as_text((site / f"{d}.html").read_text()))}
    assert not bad, f"markdown tables shown as text (rows of dashes) on: {bad}"


def test_table_as_text_detector():
    assert tables_shown_as_text("<p>| a | b | |\u2014|\u2014| | 1 | 2 |</p>") == 1
    assert tables_shown_as_text('<pre>lines = ["|---|---|"]</pre><table><tr><td>1</td></tr></table>') == 0


def test_link_checker_finds_broken_links(tmp_path):
    (tmp_path / "a.html").write_text(
        '<a href="b.html#there">ok</a><a href="b.html#nowhere">bad anchor</a>'
        '<a href="missing.html">bad file</a><a href="https://example.org">external link is fine</a>'
        '<script src="https://cdn.example.org/x.js"></script><a href="#top" id="top">self</a>'
    )
    (tmp_path / "b.html").write_text('<h1 id="there">b</h1>')
    problems = broken_links(tmp_path)
    assert len(problems) == 3, problems
    assert any("#nowhere" in p for p in problems) and any("missing.html" in p for p in problems)
    assert any("cdn.example.org" in p for p in problems)


def test_toc_docnames_reads_parts_and_sections(tmp_path):
    toc = tmp_path / "_toc.yml"
    toc.write_text(
        "format: jb-book\nroot: book/intro\nparts:\n  - caption: A\n    chapters:\n"
        "      - file: book/a\n        sections:\n          - file: book/a1.md\n      - file: book/b\n"
    )
    assert toc_docnames(toc) == ["book/intro", "book/a", "book/a1", "book/b"]


# ---------------------------------------------------------------------------------------------
# what the executed chapters print: no temporary paths, no tracebacks; every glued value defined

TEMP_PATH = re.compile(r"(?<![\w.~])/tmp/|/var/folders/|\\AppData\\Local\\Temp\\")
TRACEBACK = re.compile(
    r"Traceback \(most recent call last\)|-{40,}\s*(?:<[^>]*>\s*)*\w{0,40}(?:Error|Exception)\b"
)
GLUE_ROLE = re.compile(r"\{glue(?::[a-z]+)?\}`([^`:]+)(?::[^`]*)?`")
GLUE_DIRECTIVE = re.compile(r"^```\{glue(?::[a-z]+)?\}\s+(\S+)", re.M)
JUPYTER_EXECUTE = SITE.parent / "jupyter_execute"


def printed_problems(html: str) -> list[str]:
    """Temporary paths and tracebacks in the outputs a page shows (its cells' sources excluded)."""
    chunks = html.split('<div class="cell_output docutils container">')[1:]
    text = "\n".join(re.split(r'<div class="cell docutils container|</section>', c)[0] for c in chunks)
    text = re.sub(r"<script.*?</script>", "", text, flags=re.S)  # plotly/widget data, not printed text
    found = [
        f"temporary path: ...{m.group(0)}{text[m.end() : m.end() + 40]}" for m in TEMP_PATH.finditer(text)
    ]
    found += [f"traceback: {m.group(0)[:80]}" for m in TRACEBACK.finditer(text)]
    return found


def glue_keys_used(markdown: str) -> set[str]:
    """Names pasted with myst-nb's {glue} roles and directives in a chapter's source."""
    return set(GLUE_ROLE.findall(markdown)) | set(GLUE_DIRECTIVE.findall(markdown))


def glue_keys_defined(notebook: dict) -> set[str]:
    """Names glued (``myst_nb.glue``) by the outputs of an executed notebook."""
    names = set()
    for cell in notebook.get("cells", []):
        for out in cell.get("outputs", []):
            name = out.get("metadata", {}).get("scrapbook", {}).get("name")
            if name:
                names.add(name)
    return names


def test_pages_print_no_temporary_paths_or_tracebacks(site):
    bad = {d: p for d in toc_docnames() if (p := printed_problems((site / f"{d}.html").read_text()))}
    assert not bad, "pages print temporary paths or tracebacks:\n" + "\n".join(
        f"{d}: {p[:3]}" for d, p in bad.items()
    )


def test_every_glued_value_is_defined(site):
    import json

    problems = []
    for doc in toc_docnames():
        used = glue_keys_used((ROOT / f"{doc}.md").read_text(encoding="utf-8"))
        if not used:
            continue
        # myst-nb writes the glued values of <doc>.ipynb into <doc>.glue.json beside it
        glued = JUPYTER_EXECUTE / f"{doc}.glue.json"
        executed = JUPYTER_EXECUTE / f"{doc}.ipynb"
        if glued.is_file():
            defined = set(json.loads(glued.read_text(encoding="utf-8")))
        elif executed.is_file():
            defined = glue_keys_defined(json.loads(executed.read_text(encoding="utf-8")))
        else:
            problems.append(f"{doc}: pastes {sorted(used)} but the build wrote no {executed.name}")
            continue
        missing = used - defined
        if missing:
            problems.append(f"{doc}: glue keys pasted but never glued: {sorted(missing)}")
        if "{glue" in re.sub(
            r"<pre.*?</pre>|<code.*?</code>", "", (site / f"{doc}.html").read_text(), flags=re.S
        ):
            problems.append(f"{doc}: a {{glue}} role is shown as text")
    assert not problems, "\n".join(problems)


def test_printed_problem_and_glue_detectors():
    out = '<div class="cell_output docutils container">{}</div></div>'
    out += '<div class="cell docutils container">x</div>'
    assert printed_problems(out.format("<pre>checkpoint: /tmp/tmpab12/run</pre>"))
    assert printed_problems(out.format("<pre>Traceback (most recent call last):\n  File x</pre>"))
    assert printed_problems(out.format("<pre>" + "-" * 75 + "\nValueError Traceback</pre>"))
    assert not printed_problems(out.format("<pre>data set: stb   root: ~/data/stb</pre>"))
    assert not printed_problems('<div class="cell_input"><pre>tmp = Path("/tmp/x")</pre></div>')
    md = "a {glue:text}`n_tiny:.1f` M and {glue:md}`name`, {glue}`plain`\n```{glue:figure} fig\n```"
    assert glue_keys_used(md) == {"n_tiny", "name", "plain", "fig"}
    nb = {"cells": [{"outputs": [{"metadata": {"scrapbook": {"name": "n_tiny"}}}, {"metadata": {}}]}]}
    assert glue_keys_defined(nb) == {"n_tiny"}
