"""data_scripts: resumable download from a local HTTP server, verification, unpacking, index
building, and clear failure without internet."""

from __future__ import annotations

import http.server
import importlib.util
import sys
import threading
import zipfile
from pathlib import Path

import pytest

from handpose_lib.data.examples import write_rhd

SCRIPTS = Path(__file__).resolve().parents[1] / "data_scripts"


def _load(name):
    sys.path.insert(0, str(SCRIPTS))
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files with HTTP Range support (206), like the data sets' servers."""

    def log_message(self, *a):
        pass

    def do_GET(self):
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        rng = self.headers.get("Range")
        start = int(rng.split("=")[1].split("-")[0]) if rng else 0
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])


@pytest.fixture
def server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    handler = lambda *a, **k: RangeHandler(*a, directory=str(served), **k)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_download_resumes_verifies_unpacks_and_indexes(tmp_path, server, monkeypatch, capsys):
    common = _load("_common")
    rhd = _load("get_rhd")
    served, url = server
    src = tmp_path / "src" / "RHD_published_v2"
    write_rhd(src)
    zpath = served / "RHD_v1-1.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        for f in sorted(src.rglob("*")):
            if f.is_file():
                z.write(f, f.relative_to(src.parent))
    data = zpath.read_bytes()
    root = tmp_path / "data"
    part = root / "_downloads" / "RHD_v1-1.zip.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(data[:1000])  # an interrupted earlier download
    spec = rhd.SPEC
    spec.archives = [
        common.Archive(f"{url}/RHD_v1-1.zip", "RHD_v1-1.zip", len(data), common.sha256sum(zpath))
    ]
    monkeypatch.setenv("HANDPOSE_CACHE", str(tmp_path / "cache"))
    assert common.main(spec, ["--root", str(root), "--download"]) == 0
    assert (root / "_downloads" / "RHD_v1-1.zip").read_bytes() == data and not part.exists()
    assert (root / "RHD_published_v2" / "training" / "anno_training.pickle").is_file()
    assert list((tmp_path / "cache" / "index").glob("rhd-*.npz"))
    out = capsys.readouterr().out
    assert "index cached: 5 samples" in out and out.strip().endswith("OK")


def test_wrong_size_is_rejected(tmp_path, server):
    common = _load("_common")
    served, url = server
    (served / "a.zip").write_bytes(b"x" * 100)
    with pytest.raises(common.DownloadError, match="expected 99"):
        common.download(common.Archive(f"{url}/a.zip", "a.zip", 99), tmp_path, quiet=True)


def test_no_internet_fails_clearly(tmp_path, capsys):
    common = _load("_common")
    fh = _load("get_freihand")
    spec = fh.SPEC
    spec.archives = [common.Archive("http://127.0.0.1:9/FreiHAND_pub_v2.zip", "FreiHAND_pub_v2.zip", 10)]
    assert common.main(spec, ["--root", str(tmp_path), "--download"]) == 2
    out = capsys.readouterr().out
    assert "cannot download" in out and "download it by hand" in out and "training_xyz.json" in out


def test_manual_only_data_sets_print_instructions(tmp_path, capsys):
    common = _load("_common")
    for name, needle in [("get_stb", "dropbox"), ("get_ganerated", "licence"), ("get_synthhands", "licence")]:
        mod = _load(name)
        assert common.main(mod.SPEC, ["--root", str(tmp_path / name), "--download"]) == 2
        out = capsys.readouterr().out.lower()
        assert needle in out and "handpose data check" in out and "must look like" in out
