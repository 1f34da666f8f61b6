"""Shared code of the ``data_scripts/get_*.py`` scripts: resumable download with size/checksum
verification, unpacking, clear manual instructions, and building the loader's cached index.

Every script works the same way::

    python data_scripts/get_<name>.py --root DATA_FOLDER [--download] [--archive FILE] [--no-index]

1. If ``--download`` and the data set has a direct URL, fetch it into ``<root>/_downloads/``
   (resumes a partial ``.part`` file with an HTTP Range request, checks the expected size and,
   where known, SHA-256). Without internet it stops with the manual steps instead of a traceback.
2. Unpack the archive (``--archive`` for one downloaded by hand) into ``<root>``.
3. Build the loader's index into the cache (``$HANDPOSE_CACHE/index``) and run
   ``handpose data check`` on it, so training starts fast.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

CHUNK = 1 << 20
REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO))


class DownloadError(RuntimeError):
    """A download failed; the message says what to do by hand."""


@dataclass
class Archive:
    url: str
    filename: str
    size: int | None = None  # bytes, as reported by the server (Content-Length)
    sha256: str | None = None


@dataclass
class Spec:
    name: str  # loader name for `handpose data check`
    title: str
    page: str
    licence: str
    layout: str
    archives: list[Archive] = field(default_factory=list)  # empty: manual download only
    manual: str = ""  # what to do by hand
    data_subdir: str = ""  # folder inside <root> the loader's root is (after unpacking)


def sha256sum(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def verify(path: Path, archive: Archive) -> None:
    """Raise DownloadError if the file's size or SHA-256 differ from the expected ones."""
    size = path.stat().st_size
    if archive.size is not None and size != archive.size:
        raise DownloadError(f"{path}: {size} bytes, expected {archive.size}: incomplete or wrong file")
    if archive.sha256 and sha256sum(path) != archive.sha256:
        raise DownloadError(f"{path}: SHA-256 differs from {archive.sha256}: corrupt download")


def download(archive: Archive, dest_dir: Path, timeout: float = 30.0, quiet: bool = False) -> Path:
    """Download ``archive`` into ``dest_dir`` (resuming ``<file>.part``), verify, return the path."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / archive.filename
    if final.exists():
        verify(final, archive)
        return final
    part = final.with_name(final.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(archive.url, headers={"User-Agent": "handpose-book/0.1"})
    if have:
        req.add_header("Range", f"bytes={have}-")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status = getattr(r, "status", 200)
            if have and status != 206:  # the server ignored the Range request: start again
                have = 0
            total = r.headers.get("Content-Length")
            total = int(total) + have if total is not None else archive.size
            with open(part, "ab" if have else "wb") as f:
                done = have
                for block in iter(lambda: r.read(CHUNK), b""):
                    f.write(block)
                    done += len(block)
                    if not quiet and total:
                        print(f"\r  {archive.filename}: {done / 1e6:,.0f} / {total / 1e6:,.0f} MB", end="")
            if not quiet:
                print()
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        raise DownloadError(
            f"cannot download {archive.url} ({getattr(e, 'reason', e)}).\n"
            f"No internet, or the server refused. Download it by hand and save it as\n  {final}\n"
            f"(a partial download in {part}, if any, is resumed next time)."
        ) from e
    verify(part, archive)
    part.replace(final)
    return final


def unpack(archive_path: Path, root: Path) -> None:
    """Unpack a .zip or .tar(.gz) into ``root`` (member paths must stay inside ``root``)."""
    root = root.resolve()
    if zipfile.is_zipfile(archive_path):
        with zipfile.ZipFile(archive_path) as z:
            for m in z.namelist():
                if not (root / m).resolve().is_relative_to(root):
                    raise DownloadError(f"{archive_path}: member {m!r} would be written outside {root}")
            z.extractall(root)
    elif tarfile.is_tarfile(archive_path):
        with tarfile.open(archive_path) as t:
            if hasattr(tarfile, "data_filter"):  # python >= 3.10.12 / 3.11.4
                t.extractall(root, filter="data")
            else:
                for m in t.getmembers():
                    if not (root / m.name).resolve().is_relative_to(root) or m.issym() or m.islnk():
                        raise DownloadError(f"{archive_path}: unsafe member {m.name!r}")
                t.extractall(root)
    else:
        raise DownloadError(f"{archive_path} is neither a zip nor a tar archive")


def manual_instructions(spec: Spec, root: Path) -> str:
    lines = [f"{spec.title}: download it by hand.", f"  page:    {spec.page}", f"  licence: {spec.licence}"]
    for a in spec.archives:
        size = f" ({a.size:,} bytes)" if a.size else ""
        lines.append(f"  file:    {a.url}{size}")
    if spec.manual:
        lines.append("  steps:   " + spec.manual.strip().replace("\n", "\n           "))
    data_root = root / spec.data_subdir if spec.data_subdir else root
    lines.append(f"  then the folder {data_root} must look like:")
    lines.extend("    " + line for line in spec.layout.rstrip().splitlines())
    lines.append(f"  verify:  handpose data check {spec.name} {data_root}")
    return "\n".join(lines)


def build_index(spec: Spec, data_root: Path) -> int:
    """Build the loader's cached index and print the data check; 0 if the data set is usable."""
    from handpose_lib.data import check as chk  # layer 4 script -> library

    cls, kwargs = chk.LOADERS[spec.name]
    try:
        ds = cls(data_root, **{**kwargs, "cache_dir": "auto"})
        print(f"index cached: {len(ds)} samples ({cls.__name__})")
    except (FileNotFoundError, ValueError) as e:
        print(f"cannot index {data_root}:\n{e}")
        return 1
    report = chk.check_dataset(spec.name, data_root)
    print(chk.format_report(report))
    return 0 if report["ok"] else 1


def main(spec: Spec, argv=None) -> int:
    p = argparse.ArgumentParser(description=f"Get and prepare {spec.title}. " + (spec.manual.split("\n")[0]))
    p.add_argument("--root", required=True, type=Path, help="folder to put the data set in")
    p.add_argument("--download", action="store_true", help="download from the official URL (needs internet)")
    p.add_argument("--archive", type=Path, action="append", help="an archive already downloaded by hand")
    p.add_argument("--no-index", action="store_true", help="do not build the cached index")
    p.add_argument("--print-instructions", action="store_true", help="only print what to download and where")
    a = p.parse_args(argv)
    root = a.root.expanduser()
    if a.print_instructions:
        print(manual_instructions(spec, root))
        return 0
    archives = list(a.archive or [])
    if a.download:
        if not spec.archives:
            print(f"{spec.title} has no direct download URL (licence form or cloud folder).\n")
            print(manual_instructions(spec, root))
            return 2
        try:
            archives += [download(x, root / "_downloads") for x in spec.archives]
        except DownloadError as e:
            print(f"download failed: {e}\n")
            print(manual_instructions(spec, root))
            return 2
    for arc in archives:
        if not Path(arc).is_file():
            print(f"archive not found: {arc}")
            return 2
        print(f"unpacking {arc} into {root} ...")
        try:
            unpack(Path(arc), root)
        except (DownloadError, zipfile.BadZipFile, tarfile.TarError, OSError) as e:
            print(f"cannot unpack {arc}: {e}")
            return 2
    data_root = root / spec.data_subdir if spec.data_subdir else root
    if not data_root.exists():
        print(manual_instructions(spec, root))
        return 2
    if a.no_index:
        return 0
    return build_index(spec, data_root)
