"""Student/instructor versions of the chapters (tools/student.py, `make student`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import student as st  # noqa: E402

CHAPTER = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# A tiny chapter

![a figure](img/dot.png)

```{code-cell} ipython3
squares = [i * i for i in range(5)]
```

```{exercise}
:label: ex-sum

Sum the squares.
```

```{solution} ex-sum
:class: dropdown

SECRET-DIRECTIVE the answer is `sum(squares)`, which is thirty.
```

```{code-cell} ipython3
:tags: [solution]

answer = sum(squares)  # SECRET-CELL
assert answer == 30
```

:::{admonition} Solution (colon fence)
:class: dropdown

SECRET-ADMONITION use a generator expression instead of a list.
:::

:::{admonition} Hint
A hint is not a solution and stays.
:::

`````{tab-set}
````{tab-item} Nested
```{solution} ex-sum
SECRET-NESTED inside another directive.
```
Tab text stays.
````
`````

```{solution-start} ex-sum
```
SECRET-GATED markdown between start and end.

```{code-cell} ipython3
gated = "SECRET-GATED-CODE"
```

```{solution-end}
```

```python
# a plain code block stays: not a solution
```

The end.
"""
SECRETS = ["SECRET-DIRECTIVE", "SECRET-CELL", "SECRET-ADMONITION", "SECRET-NESTED", "SECRET-GATED"]
CONFIG = "repository:\n  url: https://github.com/someone/some-book\n  branch: main\n"


@pytest.fixture
def book(tmp_path):
    (tmp_path / "book" / "img").mkdir(parents=True)
    (tmp_path / "book" / "img" / "dot.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (tmp_path / "book" / "tiny.md").write_text(CHAPTER)
    (tmp_path / "book" / "plain.md").write_text("# Plain page\n\nNo kernelspec: not a notebook.\n")
    (tmp_path / "_config.yml").write_text(CONFIG)
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/tiny\nchapters:\n  - file: book/plain\n")
    return tmp_path


def _export(book: Path):
    out_s, out_i = book / "student", book / "instructor"
    code = st.main(
        ["--toc", str(book / "_toc.yml"), "--config", str(book / "_config.yml"),
         "--student-out", str(out_s), "--instructor-out", str(out_i)]
    )  # fmt: skip
    assert code == 0
    return out_s, out_i


def test_student_version_has_no_solution_text(book):
    out_s, out_i = _export(book)
    student = (out_s / "tiny.ipynb").read_text()
    instructor = (out_i / "tiny.ipynb").read_text()
    for secret in SECRETS:
        assert secret not in student, secret
        assert secret in instructor, secret
    assert "A hint is not a solution and stays." in student and "Tab text stays." in student
    assert "a plain code block stays" in student
    assert "Sum the squares." in student and "The end." in student
    assert not (out_s / "plain.ipynb").exists(), "a page without kernelspec is not a notebook"


def test_solution_cells_are_blanked_not_removed(book):
    out_s, _ = _export(book)
    nb = nbformat.read(out_s / "tiny.ipynb", as_version=4)
    blanks = [c for c in nb.cells if c.cell_type == "code" and c.source == st.PLACEHOLDER]
    assert len(blanks) == 2  # the tagged cell and the code cell inside the gated solution
    assert all(c.outputs == [] and "solution" not in c.metadata.get("tags", []) for c in blanks)


def test_notebooks_are_valid_and_open_in_jupyterlab_and_colab(book):
    out_s, out_i = _export(book)
    for path in (out_s / "tiny.ipynb", out_i / "tiny.ipynb"):
        raw = json.loads(path.read_text())
        assert raw["nbformat"] == 4 and raw["metadata"]["kernelspec"]["name"] == "python3"
        assert "jupytext" not in raw["metadata"]
        nbformat.validate(nbformat.reads(path.read_text(), as_version=4))
        colab = [c for c in raw["cells"] if "google.colab" in "".join(c["source"])]
        assert len(colab) == 1 and "hide-cell" in colab[0]["metadata"]["tags"]
        assert "git+https://github.com/someone/some-book@main" in "".join(colab[0]["source"])
    assert (out_s / "img" / "dot.png").is_file() and (out_i / "img" / "dot.png").is_file()


def test_chapter_with_its_own_colab_cell_gets_no_second_one(book):
    text = CHAPTER.replace(
        "# A tiny chapter\n",
        '# A tiny chapter\n\n```{code-cell} ipython3\nimport sys\n"google.colab" in sys.modules\n```\n',
    )
    (book / "book" / "tiny.md").write_text(text)
    out_s, _ = _export(book)
    nb = nbformat.read(out_s / "tiny.ipynb", as_version=4)
    assert sum("google.colab" in c.source for c in nb.cells) == 1


def test_unclosed_gated_solution_is_an_error(book, capsys):
    (book / "book" / "tiny.md").write_text(CHAPTER.replace("```{solution-end}\n```\n", ""))
    code = st.main(["--toc", str(book / "_toc.yml"), "--config", str(book / "_config.yml"),
                    "--student-out", str(book / "s"), "--instructor-out", str(book / "i")])  # fmt: skip
    assert code == 1
    assert "solution-end" in capsys.readouterr().err


def test_leak_check_finds_a_copied_line():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("x = compute_the_answer(42)")])
    assert st.leaks(nb, ["```{solution}\nx = compute_the_answer(42)\n```"]) == ["x = compute_the_answer(42)"]
    assert st.leaks(nb, ["```{solution}\nsomething else entirely\n```"]) == []


def test_real_chapters_export_without_leaks(tmp_path):
    """Every notebook chapter in the book's _toc.yml: student copy valid and free of solution text."""
    sources = [p for p in st.toc_files(ROOT / "_toc.yml") if st.is_notebook(p)]
    assert sources, "the book has no notebook chapters"
    done = st.export(sources, tmp_path / "s", tmp_path / "i", ROOT / "_config.yml")
    assert done == sources
    for source in sources:
        nb_i = nbformat.read(tmp_path / "i" / f"{source.stem}.ipynb", as_version=4)
        nb_s, removed = st.make_student(nb_i)
        assert st.leaks(nbformat.read(tmp_path / "s" / f"{source.stem}.ipynb", as_version=4), removed) == []
        assert "{solution}" not in (tmp_path / "s" / f"{source.stem}.ipynb").read_text()


@pytest.mark.slow
def test_instructor_copy_executes(book):
    """The instructor notebook runs top to bottom (tiny fixture and the book's intro chapter)."""
    from nbclient import NotebookClient

    _, out_i = _export(book)
    st.export([ROOT / "book" / "intro.md"], book / "s2", out_i, ROOT / "_config.yml")
    for name in ("tiny", "intro"):
        nb = nbformat.read(out_i / f"{name}.ipynb", as_version=4)
        client = NotebookClient(
            nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(out_i)}}
        )
        client.execute()  # raises CellExecutionError on the first failing cell
        assert all(c.execution_count for c in nb.cells if c.cell_type == "code"), name
