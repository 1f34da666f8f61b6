"""Publishing set-up: the GitHub Actions workflow, one place for the site's addresses, offline assets."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_workflow_is_valid_yaml_with_the_documented_steps():
    wf = yaml.safe_load((ROOT / ".github" / "workflows" / "book.yml").read_text())
    triggers = wf[True] if True in wf else wf["on"]  # YAML 1.1 reads the key `on` as True
    assert "main" in triggers["push"]["branches"]
    assert wf["permissions"]["contents"] == "write"
    job = wf["jobs"]["book"]
    runs = [s.get("run", "") for s in job["steps"]]
    for command in ("make env", "make book", "make student", "make site-test", "make publish"):
        assert any(command in r for r in runs), f"workflow does not run {command}"
    assert job["env"]["HANDPOSE_PROFILE"] == "quick"
    assert "whl/cpu" in job["env"]["TORCH_SPEC"]
    cached = [s["with"]["path"] for s in job["steps"] if s.get("uses", "").startswith("actions/cache")]
    assert "_build/.jupyter_cache" in cached
    publish = next(s for s in job["steps"] if "make publish" in s.get("run", ""))
    assert "refs/heads/main" in publish["if"]


def test_site_addresses_come_from_config_in_one_place():
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    m = re.match(r"https://github\.com/([^/]+)/([^/]+?)/?$", cfg["repository"]["url"])
    assert m, "repository: url: must be a GitHub repository URL"
    assert cfg["html"]["baseurl"].rstrip("/") == f"https://{m[1]}.github.io/{m[2]}"
    assert cfg["launch_buttons"]["colab_url"] and cfg["launch_buttons"]["binderhub_url"]
    text = "\n".join(
        p.read_text()
        for p in [ROOT / "Makefile", ROOT / ".github/workflows/book.yml", ROOT / "tools/student.py"]
    )
    assert "github.com/" + m[1] not in text, "the repository address belongs in _config.yml only"


def test_offline_assets_are_committed_and_unchanged():
    out = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "offline_assets.py"), "--check"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())["sphinx"]["config"]
    extra = ROOT / cfg["html_extra_path"][0]
    for path in [cfg["mathjax_path"], *cfg["nb_ipywidgets_js"]]:
        # Sphinx serves these as _static/<path>; "../" climbs back to the site root
        assert path.startswith("../") and (extra / path[3:]).is_file(), path


def test_sphinx_extension_strips_plotly_cdn_mathjax_and_builds_colab_urls():
    sys.path.insert(0, str(ROOT / "tools"))
    import handpose_site as hs

    html = '<div><script src="https://cdnjs.cloudflare.com/ajax/libs/mathjax/3.2.2/es5/tex-svg.min.js"></script>x</div>'
    cleaned, external = hs.strip_cdn_scripts(html)
    assert cleaned == "<div>x</div>" and external == []
    _, external = hs.strip_cdn_scripts('<script src="https://cdn.plot.ly/plotly.min.js"></script>')
    assert external
    url = hs.colab_url(
        "https://colab.research.google.com", "https://github.com/o/r", "book/03_lhr", "student"
    )
    assert url == "https://colab.research.google.com/github/o/r/blob/gh-pages/notebooks/student/03_lhr.ipynb"
    assert hs.colab_url("https://colab.research.google.com", "https://gitlab.com/o/r", "x", "student") is None
