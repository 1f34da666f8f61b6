"""The JavaScript the built site needs, served from the site itself (no CDN).

The book site must work on a classroom machine with no internet: MathJax (math), RequireJS and
the ipywidgets HTML manager (widget snapshots) are committed under ``book/_offline_assets/offline/``
and copied into the site by Sphinx's ``html_extra_path`` (``_config.yml``). plotly.js needs nothing
here: the ``plotly_mimetype+notebook`` renderer embeds it in each page that has a figure.

This script records where those files came from and regenerates them::

    python tools/offline_assets.py --check   # every file listed in MANIFEST.json is there, same sha256
    python tools/offline_assets.py --fetch   # re-download the pinned npm packages (needs npm + registry)

Licences: MathJax (Apache-2.0), @jupyter-widgets/html-manager (BSD-3-Clause), requirejs (MIT); their
licence texts are copied next to the files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "book" / "_offline_assets" / "offline"
MANIFEST = ASSETS / "MANIFEST.json"

# npm package -> files to keep: (path inside the package, path under ASSETS)
PACKAGES: dict[str, list[tuple[str, str]]] = {
    "mathjax@3.2.2": [
        ("es5/tex-chtml.js", "mathjax/tex-chtml.js"),
        ("es5/output/chtml/fonts/woff-v2/*", "mathjax/output/chtml/fonts/woff-v2/"),
        ("LICENSE", "licenses/mathjax-LICENSE"),
    ],
    "@jupyter-widgets/html-manager@1.0.6": [
        ("dist/embed-amd.js", "widgets/embed-amd.js"),
        ("dist/*.woff2", "widgets/"),
        ("dist/embed.js.LICENSE.txt", "licenses/html-manager-bundled-LICENSES.txt"),
    ],
    "requirejs@2.3.8": [("require.js", "widgets/require.js")],
}
HTML_MANAGER_LICENSE = (
    "@jupyter-widgets/html-manager is distributed under the BSD-3-Clause licence by Project Jupyter\n"
    "contributors (https://github.com/jupyter-widgets/ipywidgets/blob/main/LICENSE).\n"
)
REQUIREJS_LICENSE = (
    "requirejs is distributed under the MIT licence, Copyright jQuery Foundation and other\n"
    "contributors (https://github.com/requirejs/requirejs/blob/master/LICENSE). The licence header\n"
    "is kept at the top of require.js.\n"
)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch() -> None:
    """Download the pinned packages with `npm pack` and copy the needed files into ASSETS."""
    if shutil.which("npm") is None:
        sys.exit("npm is not installed: install Node.js/npm, or use the committed files (--check).")
    if ASSETS.exists():
        shutil.rmtree(ASSETS)
    ASSETS.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        for spec, files in PACKAGES.items():
            out = subprocess.run(
                ["npm", "pack", spec, "--silent"], cwd=tmp, capture_output=True, text=True, check=False
            )
            if out.returncode != 0:
                sys.exit(f"npm pack {spec} failed (no registry access?):\n{out.stderr}")
            tgz = tmp_path / out.stdout.strip().splitlines()[-1]
            unpack = tmp_path / tgz.stem
            with tarfile.open(tgz) as tar:
                tar.extractall(unpack, filter="data")
            pkg = unpack / "package"
            for src, dst in files:
                for f in sorted(pkg.glob(src)):
                    target = ASSETS / dst / f.name if dst.endswith("/") else ASSETS / dst
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(f, target)
    (ASSETS / "licenses" / "html-manager-LICENSE").write_text(HTML_MANAGER_LICENSE)
    (ASSETS / "licenses" / "requirejs-LICENSE").write_text(REQUIREJS_LICENSE)
    files = sorted(p for p in ASSETS.rglob("*") if p.is_file() and p != MANIFEST)
    manifest = {
        "packages": sorted(PACKAGES),
        "files": {p.relative_to(ASSETS).as_posix(): _sha256(p) for p in files},
    }
    MANIFEST.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    total = sum(p.stat().st_size for p in files)
    print(f"wrote {len(files)} files, {total / 1e6:.2f} MB, into {ASSETS.relative_to(ROOT)}")


def check() -> list[str]:
    """Problems with the committed assets (empty list when every file is there and unchanged)."""
    if not MANIFEST.is_file():
        return [f"{MANIFEST.relative_to(ROOT)} is missing: run `python tools/offline_assets.py --fetch`"]
    manifest = json.loads(MANIFEST.read_text())
    problems = []
    for rel, digest in manifest["files"].items():
        path = ASSETS / rel
        if not path.is_file():
            problems.append(f"missing {path.relative_to(ROOT)}")
        elif _sha256(path) != digest:
            problems.append(f"changed {path.relative_to(ROOT)} (sha256 differs from MANIFEST.json)")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--fetch", action="store_true", help="re-download the pinned npm packages")
    group.add_argument("--check", action="store_true", help="verify the committed files")
    args = parser.parse_args(argv)
    if args.fetch:
        fetch()
    problems = check()
    for p in problems:
        print(p, file=sys.stderr)
    if not problems:
        print(f"offline assets OK ({ASSETS.relative_to(ROOT)})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
