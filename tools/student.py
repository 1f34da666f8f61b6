"""Student and instructor versions of the book's chapters, as notebooks for JupyterLab and Colab.

    python tools/student.py                      # every notebook chapter in _toc.yml
    python tools/student.py book/03_lhr.md ...   # only these
    (make student does the first, into student/ and instructor/)

Marking convention (the "For instructors" page documents it for chapter authors):

- Solutions in MyST directives are removed from the student version: ``{solution}`` (sphinx-exercise,
  also its gated form ``{solution-start}`` ... ``{solution-end}``, which may span code cells), and
  ``{admonition}`` or ``{dropdown}`` whose title starts with "Solution". Backtick or colon fences.
- Code cells tagged ``solution`` keep their place but their body becomes ``# your code here`` (and
  their outputs are cleared).

Both versions get a first code cell, tagged ``hide-cell``, that installs ``handpose_lib`` from the
repository named in ``_config.yml`` when (and only when) the notebook runs on Colab, unless the
chapter already has one (a cell that mentions ``google.colab``). Images a chapter links to are copied
next to the notebooks. The student version is checked for leaks (any line of a removed solution
still present) before it is written; a leak is an error.
"""

from __future__ import annotations

import argparse
import copy
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import jupytext
import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
PLACEHOLDER = "# your code here"
SOLUTION_TAG = "solution"
FENCE_OPEN = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,}|:{3,})\s*(?P<info>.*)$")
DIRECTIVE = re.compile(r"^\{(?P<name>[\w:-]+)\}\s*(?P<arg>.*)$")
COLAB_CELL = """\
# On Colab only: install handpose_lib from the book's repository (does nothing anywhere else).
import sys

if "google.colab" in sys.modules:
    import subprocess

    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "git+{repo}@{branch}"], check=True)
"""
IMAGE_LINK = re.compile(
    r"!\[[^\]]*\]\((?P<md>[^)\s]+)\)|\{(?:figure|image)\}\s+(?P<dir>\S+)|src=\"(?P<html>[^\"]+)\""
)


# ---------------------------------------------------------------------------------------------
# removing solutions from MyST markdown


@dataclass
class _State:
    """Carried across the cells of one notebook: inside a gated solution, and what was removed."""

    in_gated: bool = False
    removed: list[str] = field(default_factory=list)


def _is_solution(name: str, arg: str) -> bool:
    if name in ("solution", "solution-start"):
        return True
    return name in ("admonition", "dropdown") and arg.strip().lower().startswith("solution")


def _closing(lines: list[str], start: int, fence: str) -> int:
    """Index of the line closing `fence` opened before `start` (len(lines) if it never closes)."""
    char, n = fence[0], len(fence)
    close = re.compile(rf"^\s*{re.escape(char)}{{{n},}}\s*$")
    for j in range(start, len(lines)):
        if close.match(lines[j]):
            return j
    return len(lines)


def strip_solutions(text: str, state: _State | None = None) -> str:
    """`text` (MyST markdown) with solution directives removed; removed text goes to state.removed."""
    state = state if state is not None else _State()
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        m = FENCE_OPEN.match(lines[i])
        d = DIRECTIVE.match(m["info"].strip()) if m else None
        name, arg = (d["name"], d["arg"]) if d else ("", "")
        if state.in_gated:
            if name == "solution-end":
                state.in_gated = False
                i = _closing(lines, i + 1, m["fence"]) + 1
            else:
                if m:
                    j = _closing(lines, i + 1, m["fence"])
                    state.removed.append("\n".join(lines[i : j + 1]))
                    i = j + 1
                else:
                    state.removed.append(lines[i])
                    i += 1
            continue
        if not m:
            out.append(lines[i])
            i += 1
            continue
        j = _closing(lines, i + 1, m["fence"])
        body = lines[i + 1 : j]
        if d and _is_solution(name, arg):
            state.removed.append("\n".join(lines[i : j + 1]))
            if name == "solution-start":
                state.in_gated = True
        elif d:  # another directive: its body is markdown that may hold a solution
            out.append(lines[i])
            out.extend(strip_solutions("\n".join(body), state).split("\n") if body else [])
            if j < len(lines):
                out.append(lines[j])
        else:  # a plain code block: verbatim
            out.extend(lines[i : j + 1])
        i = j + 1
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# notebooks


def colab_cell(repo_url: str, branch: str) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(COLAB_CELL.format(repo=repo_url.rstrip("/"), branch=branch))
    cell.metadata["tags"] = ["hide-cell", "colab"]
    return cell


def _with_colab_cell(nb: nbformat.NotebookNode, repo_url: str, branch: str) -> nbformat.NotebookNode:
    nb = copy.deepcopy(nb)
    if not any(c.cell_type == "code" and "google.colab" in c.source for c in nb.cells):
        first = nb.cells[0] if nb.cells else None
        at = 1 if first is not None and first.cell_type == "markdown" and first.source.startswith("#") else 0
        nb.cells.insert(at, colab_cell(repo_url, branch))
    for key in ("jupytext",):  # the .ipynb files stand alone, not paired with the .md sources
        nb.metadata.pop(key, None)
    return nb


def make_student(nb: nbformat.NotebookNode) -> tuple[nbformat.NotebookNode, list[str]]:
    """The student version of an (instructor) notebook and the solution texts removed from it."""
    nb = copy.deepcopy(nb)
    state = _State()
    cells = []
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if state.in_gated and cell.cell_type != "markdown":
            state.removed.append(cell.source)
            if cell.cell_type == "code":
                cells.append(_blank(cell))
            continue
        if cell.cell_type == "markdown":
            source = strip_solutions(cell.source, state)
            if source.strip():
                cell.source = source
                cells.append(cell)
        elif cell.cell_type == "code" and SOLUTION_TAG in tags:
            state.removed.append(cell.source)
            cells.append(_blank(cell))
        else:
            cells.append(cell)
    if state.in_gated:
        raise ValueError("a {solution-start} has no matching {solution-end}: the rest would be removed")
    nb.cells = cells
    return nb, state.removed


def _blank(cell: nbformat.NotebookNode) -> nbformat.NotebookNode:
    cell = copy.deepcopy(cell)
    cell.source = PLACEHOLDER
    if cell.cell_type == "code":
        cell.outputs, cell.execution_count = [], None
    tags = [t for t in cell.metadata.get("tags", []) if t != SOLUTION_TAG]
    if tags:
        cell.metadata["tags"] = tags
    else:
        cell.metadata.pop("tags", None)
    return cell


def leaks(student: nbformat.NotebookNode, removed: list[str], min_len: int = 12) -> list[str]:
    """Lines of removed solutions (at least min_len characters, not fences or options) still in student."""
    text = "\n".join(c.source for c in student.cells)
    present = {line.strip() for line in text.split("\n")}
    found = []
    for block in removed:
        for line in block.split("\n"):
            s = line.strip()
            if len(s) >= min_len and not FENCE_OPEN.match(s) and not s.startswith(":") and s in present:
                found.append(s)
    return found


# ---------------------------------------------------------------------------------------------
# the book


def toc_files(toc: Path) -> list[Path]:
    """Source files named in a Jupyter Book _toc.yml, in order."""
    data = yaml.safe_load(toc.read_text())
    names = [data["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                names.append(entry["file"])
            for key in ("sections", "chapters"):
                walk(entry.get(key))

    for key in ("parts", "chapters", "sections"):
        walk(data.get(key))
    paths = []
    for name in names:
        path = toc.parent / name
        candidates = (
            [path] if path.suffix in (".md", ".ipynb") else [path.with_suffix(s) for s in (".md", ".ipynb")]
        )
        paths.extend(p for p in candidates[:2] if p.exists())
    return paths


def is_notebook(path: Path) -> bool:
    """An .ipynb, or a MyST markdown file with a kernelspec (the book executes those)."""
    if path.suffix == ".ipynb":
        return True
    head = path.read_text(encoding="utf-8").split("\n---", 1)[0]
    return path.read_text(encoding="utf-8").startswith("---") and "kernelspec" in head


def repository(config: Path) -> tuple[str, str]:
    repo = yaml.safe_load(config.read_text()).get("repository", {})
    if not repo.get("url"):
        raise ValueError(f"{config} has no repository: url: the Colab set-up cell needs it")
    return repo["url"], repo.get("branch", "main")


def _copy_images(source: Path, nb: nbformat.NotebookNode, outs: list[Path]) -> None:
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        for m in IMAGE_LINK.finditer(cell.source):
            link = m["md"] or m["dir"] or m["html"]
            if "://" in link or link.startswith(("/", "data:")):
                continue
            src = (source.parent / link).resolve()
            if src.is_file() and source.parent.resolve() in src.parents:
                for out in outs:
                    dst = out / src.relative_to(source.parent.resolve())
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, dst)


def export(sources: list[Path], student_out: Path, instructor_out: Path, config: Path) -> list[Path]:
    """Write <out>/<chapter>.ipynb for both versions; return the chapters written."""
    repo_url, branch = repository(config)
    done = []
    for out in (student_out, instructor_out):
        out.mkdir(parents=True, exist_ok=True)
    for source in sources:
        if not is_notebook(source):
            print(f"   skip {source.name} (not a notebook)")
            continue
        nb = _with_colab_cell(jupytext.read(source), repo_url, branch)
        student, removed = make_student(nb)
        leaked = leaks(student, removed)
        if leaked:
            raise ValueError(f"{source}: solution text would leak into the student version: {leaked[:3]}")
        for version, out in ((nb, instructor_out), (student, student_out)):
            nbformat.validate(version)
            nbformat.write(version, out / f"{source.stem}.ipynb")
        _copy_images(source, nb, [student_out, instructor_out])
        n_cells = sum(1 for c in student.cells if c.cell_type == "code" and c.source == PLACEHOLDER)
        print(f"   {source.stem}: {len(removed)} solution parts removed, {n_cells} cells blanked")
        done.append(source)
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("chapters", nargs="*", type=Path, help="chapter files (default: every one in --toc)")
    parser.add_argument("--toc", type=Path, default=ROOT / "_toc.yml")
    parser.add_argument("--config", type=Path, default=ROOT / "_config.yml")
    parser.add_argument("--student-out", type=Path, default=ROOT / "student")
    parser.add_argument("--instructor-out", type=Path, default=ROOT / "instructor")
    args = parser.parse_args(argv)
    sources = args.chapters or toc_files(args.toc)
    missing = [p for p in sources if not p.is_file()]
    if missing:
        print(f"no such chapter file: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    try:
        done = export(sources, args.student_out, args.instructor_out, args.config)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f">> {len(done)} chapters written: student versions in {args.student_out}")
    print(f"   instructor versions (with solutions) in {args.instructor_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
