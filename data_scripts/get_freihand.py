"""Get and prepare FreiHAND v2: direct download, 3.9 GB (+ 0.76 GB evaluation set)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Archive, Spec, main  # noqa: E402

from handpose_lib.data.freihand import LAYOUT  # noqa: E402

BASE = "https://lmb.informatik.uni-freiburg.de/data/freihand/"
SPEC = Spec(
    name="freihand",
    title="FreiHAND v2 (Zimmermann et al. 2019)",
    page="https://lmb.informatik.uni-freiburg.de/resources/datasets/FreihandDataset.en.html",
    licence="research only, no commercial use, no warranty; cite Zimmermann et al., ICCV 2019",
    layout=LAYOUT,
    # sizes: the server's Content-Length as recorded in a public repository; no checksum is published
    archives=[
        Archive(BASE + "FreiHAND_pub_v2.zip", "FreiHAND_pub_v2.zip", 3881833583),
        Archive(BASE + "FreiHAND_pub_v2_eval.zip", "FreiHAND_pub_v2_eval.zip", 758382230),
    ],
    manual="""Download FreiHAND_pub_v2.zip (and FreiHAND_pub_v2_eval.zip for the evaluation split) from the
page (or run with --download); pass them with --archive. training/, evaluation/ and the
*_xyz.json / *_K.json files must end up directly in --root (if the evaluation zip unpacks into
a FreiHAND_pub_v2_eval/ folder, move its contents up into --root).""",
)

if __name__ == "__main__":
    sys.exit(main(SPEC))
