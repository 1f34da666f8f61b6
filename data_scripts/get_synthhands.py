"""Get and prepare SynthHands: manual download (licence agreement on the project page)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Spec, main  # noqa: E402

from handpose_lib.data.synthhands import LAYOUT  # noqa: E402

SPEC = Spec(
    name="synthhands",
    title="SynthHands (Mueller et al. 2017)",
    page="https://handtracker.mpi-inf.mpg.de/projects/OccludedHands/SynthHands.htm",
    licence="non-commercial research; accept the MPI licence on the project page before downloading",
    layout=LAYOUT,
    manual="""Accept the licence on the page, download the archive (63.5k frames) and pass it with
--archive (or unpack it yourself) so that ROOT/SynthHands_Release/ holds
male_object/, male_noobject/, female_object/, female_noobject/.""",
    data_subdir="SynthHands_Release",
)

if __name__ == "__main__":
    sys.exit(main(SPEC))
