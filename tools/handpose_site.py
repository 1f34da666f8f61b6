"""Sphinx extension for the book site: keep it self-contained, and point Colab at real notebooks.

Enabled in ``_config.yml`` (``sphinx: local_extensions: {handpose_site: tools}``). It does three things:

1. **Offline.** plotly's ``notebook`` renderer puts ``<script src="https://cdnjs.../mathjax/...">``
   into every figure's HTML. That script is removed (the page's MathJax is served locally, see
   ``tools/offline_assets.py``); any *other* external script or stylesheet left in a notebook output
   is reported as a warning, which fails the build (``jupyter-book build -W``). The same is done
   for HTML inside embedded widget states (a figure shown in an ipywidgets ``Output``).
2. **Colab.** The theme's Colab button opens ``blob/<branch>/book/<chapter>.md`` on GitHub, which
   Colab cannot read (it needs ``.ipynb``). The button is rewritten to open the notebook that
   ``make student`` writes and ``make publish`` pushes to the ``gh-pages`` branch:
   ``notebooks/<version>/<chapter>.ipynb`` (``handpose_colab_version``: ``instructor``, the page as
   shown, or ``student``).
3. Removes the second copy of sphinx-thebe's inline config script, a JavaScript error on every page.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util import logging

LOGGER = logging.getLogger(__name__)

# plotly's notebook renderer always adds this (include_mathjax="cdn")
PLOTLY_MATHJAX_CDN = re.compile(
    r'<script\s+src="https://cdnjs\.cloudflare\.com/ajax/libs/mathjax/[^"]*"\s*>\s*</script>'
)
EXTERNAL_ASSET = re.compile(
    r'<script[^>]*\ssrc="(?:https?:)?//[^"]*"|<link[^>]*\shref="(?:https?:)?//[^"]*\.css[^"]*"', re.IGNORECASE
)


def strip_cdn_scripts(html: str) -> tuple[str, list[str]]:
    """Remove plotly's CDN MathJax tag; return the new HTML and any external assets still in it."""
    html = PLOTLY_MATHJAX_CDN.sub("", html)
    return html, EXTERNAL_ASSET.findall(html)


def _offline_outputs(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    for node in list(doctree.findall(nodes.raw)):
        if "html" not in node.get("format", "").split():
            continue
        html, external = strip_cdn_scripts(node.astext())
        if html != node.astext():
            node.replace_self(nodes.raw(html, html, format=node["format"], classes=node["classes"]))
        for tag in external:
            LOGGER.warning(
                "%s: a notebook output loads %s from the internet; the site must work offline "
                "(serve it from book/_offline_assets, see tools/offline_assets.py)",
                docname,
                tag,
                location=node,
            )


def colab_url(colab: str, repo_url: str, pagename: str, version: str) -> str | None:
    """The Colab URL of a chapter's notebook on the gh-pages branch, or None if not on GitHub."""
    m = re.match(r"https?://github\.com/([^/]+)/([^/]+?)(?:\.git)?/?$", repo_url or "")
    if not m:
        return None
    name = PurePosixPath(pagename).name
    return f"{colab.rstrip('/')}/github/{m[1]}/{m[2]}/blob/gh-pages/notebooks/{version}/{name}.ipynb"


def _rewrite_colab(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    theme = app.config.html_theme_options
    colab = theme.get("launch_buttons", {}).get("colab_url")
    if not colab:
        return
    url = colab_url(colab, theme.get("repository_url", ""), pagename, app.config.handpose_colab_version)
    stack = list(context.get("header_buttons", []))
    while stack:
        button = stack.pop()
        stack.extend(button.get("buttons", []))
        if button.get("text") == "Colab" and url:
            button["url"] = url


# the same tag inside the JSON of an embedded widget state (an ipywidgets Output showing a figure)
PLOTLY_MATHJAX_CDN_JSON = re.compile(
    r'<script\s+src=\\"https://cdnjs\.cloudflare\.com/ajax/libs/mathjax/[^"\\]*\\"\s*><\\?/script>'
)
EXTERNAL_ASSET_JSON = re.compile(r'<script[^>]*\ssrc=\\"(?:https?:)?//[^"\\]*', re.IGNORECASE)


def strip_cdn_scripts_json(body: str) -> tuple[str, list[str]]:
    """strip_cdn_scripts for HTML held in a JSON string (widget state), quotes escaped as \\"."""
    body = PLOTLY_MATHJAX_CDN_JSON.sub("", body)
    return body, EXTERNAL_ASSET_JSON.findall(body)


def _page_scripts(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    """Per page: drop repeated inline scripts (sphinx-thebe adds its config twice: 'THEBE_JS_URL
    already declared'), and strip CDN scripts from HTML inside embedded widget states."""
    seen = set()
    scripts = []
    for js in context.get("script_files", []):
        attrs = getattr(js, "attributes", {})
        if attrs.get("type") == "application/vnd.jupyter.widget-state+json" and attrs.get("body"):
            body, external = strip_cdn_scripts_json(attrs["body"])
            for tag in external:
                LOGGER.warning(
                    "%s: a widget's output loads %s from the internet; the site must work offline",
                    pagename,
                    tag,
                )
            js = type(js)(js.filename, priority=js.priority, **{**attrs, "body": body})
        key = (getattr(js, "filename", str(js)) or "", tuple(sorted(getattr(js, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            scripts.append(js)
    context["script_files"] = scripts


def setup(app: Sphinx) -> dict:
    app.add_config_value("handpose_colab_version", "instructor", "html", types=[str])
    app.connect("doctree-resolved", _offline_outputs)
    # after sphinx-book-theme's add_launch_buttons (priority 501), before the page is written
    app.connect("html-page-context", _rewrite_colab, priority=502)
    app.connect("html-page-context", _page_scripts, priority=502)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
