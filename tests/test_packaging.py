"""The project's set-up files agree with each other."""

import re
import subprocess
import sys
from pathlib import Path

import yaml

try:
    import tomllib
except ModuleNotFoundError:  # python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
# pip name -> conda-forge name where they differ
CONDA_NAMES = {"torch": "pytorch", "opencv-python-headless": "py-opencv"}


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req, maxsplit=1)[0].strip().lower()


def test_every_runtime_dependency_is_in_environment_yml():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = {_name(d) for d in env["dependencies"] if isinstance(d, str)}
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert any(p.startswith("-e .") for p in pip), "environment.yml must pip-install the project itself"
    missing = [d for d in deps if CONDA_NAMES.get(_name(d), _name(d)) not in conda]
    assert not missing, f"runtime dependencies missing from environment.yml: {missing}"
    extra = conda - {CONDA_NAMES.get(_name(d), _name(d)) for d in deps} - {"python", "pip"}
    assert not extra, f"environment.yml lists packages pyproject.toml does not: {extra}"


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in ci and "make test" in readme and "make book" in readme


def test_package_imports_without_side_effects():
    out = subprocess.run(
        [sys.executable, "-c", "import handpose_lib as hp; print(hp.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip()


def test_gitignore_keeps_generated_folders_out():
    ignored = (ROOT / ".gitignore").read_text().split()
    for entry in (".venv/", "_build/", "runs/", "__pycache__/", ".pytest_cache/"):
        assert entry in ignored
