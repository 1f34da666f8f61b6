"""Get and prepare RHD (Rendered Hand Pose data set): direct download, 7.1 GB."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Archive, Spec, main  # noqa: E402

from handpose_lib.data.rhd import LAYOUT  # noqa: E402

SPEC = Spec(
    name="rhd",
    title="RHD (Zimmermann & Brox 2017)",
    page="https://lmb.informatik.uni-freiburg.de/resources/datasets/RenderedHandposeDataset.en.html",
    licence="research only, no commercial use, no warranty; cite Zimmermann & Brox, ICCV 2017",
    layout=LAYOUT,
    # size: the server's Content-Length as recorded in a public repository; no checksum is published
    archives=[
        Archive(
            "https://lmb.informatik.uni-freiburg.de/data/RenderedHandpose/RHD_v1-1.zip",
            "RHD_v1-1.zip",
            7080690299,
        )
    ],
    manual="""Download RHD_v1-1.zip from the page (or run with --download), then
python data_scripts/get_rhd.py --root ROOT --archive RHD_v1-1.zip  (unpacks to ROOT/RHD_published_v2).""",
    data_subdir="RHD_published_v2",
)

if __name__ == "__main__":
    sys.exit(main(SPEC))
