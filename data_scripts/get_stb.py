"""Get and prepare STB (Stereo Hand Pose Tracking Benchmark): manual download (cloud folders)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Spec, main  # noqa: E402

from handpose_lib.data.stb import LAYOUT  # noqa: E402

SPEC = Spec(
    name="stb",
    title="STB (Zhang et al. 2017)",
    page="https://github.com/zhjwustc/icip17_stereo_hand_pose_dataset",
    licence="no data licence stated (README); cite Zhang et al., ICIP 2017; research use",
    layout=LAYOUT,
    manual="""Open the Dropbox folder https://www.dropbox.com/sh/ve1yoar9fwrusz0/AAAfu7Fo4NqUB7Dn9AiN8pCca?dl=0
(or BaiduPan https://pan.baidu.com/s/1qXBpBg4) linked from the README above, download the
images/ (12 sequence folders, 18,000 frames x 4 images) and labels/ (24 .mat files) folders,
and put both directly into --root. Then run this script again without --download.""",
)

if __name__ == "__main__":
    sys.exit(main(SPEC))
