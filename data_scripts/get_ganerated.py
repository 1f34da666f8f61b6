"""Get and prepare GANerated Hands: manual download (licence agreement on the project page)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Spec, main  # noqa: E402

from handpose_lib.data.ganerated import LAYOUT  # noqa: E402

SPEC = Spec(
    name="ganerated",
    title="GANerated Hands (Mueller et al. 2018)",
    page="https://handtracker.mpi-inf.mpg.de/projects/GANeratedHands/GANeratedDataset.htm",
    licence="non-commercial research; accept the MPI licence on the project page before downloading",
    layout=LAYOUT,
    manual="""Accept the licence on the page, download the data set archive (about 330k frames) and
pass it with --archive (or unpack it yourself) so that ROOT/GANeratedHands_Release/data/
holds noObject/ and withObject/.""",
    data_subdir="GANeratedHands_Release",
)

if __name__ == "__main__":
    sys.exit(main(SPEC))
