"""Multi-process training with torchrun on CPU (gloo): the ranks stay in sync, and two processes
with batch b train exactly like one process with batch 2b (DistributedSampler shards)."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from handpose_lib import checkpoint as ck

TESTS = Path(__file__).resolve().parent

SCRIPT = """
import os, sys
sys.path.insert(0, {tests!r})
import torch
from safetensors.torch import save_file
from test_train import FakeHands, StandIn, cfg, standin_loss
from handpose_lib import train as tr

run, batch = sys.argv[1], int(sys.argv[2])
torch.set_num_threads(1)
c = cfg(batch_size=batch, epochs=2, n_train=64, lr=5e-2)
torch.manual_seed(0)
model = StandIn()
res = tr.fit(model, FakeHands(64), FakeHands(16, 1), c, run, loss_fn=standin_loss, progress=False)
rank = int(os.environ.get("RANK", "0"))
weights = {{k: v.contiguous() for k, v in model.state_dict().items()}}
save_file(weights, os.path.join(run, f"rank{{rank}}.safetensors"))
# one write(2) of a short line: atomic on a pipe, so the two ranks' lines never interleave
# (print() writes its pieces separately when torchrun leaves stdout unbuffered)
os.write(1, f"rank {{rank}} step {{res.step}}\\n".encode())
"""


@pytest.mark.slow
def test_ddp_two_processes_gloo_match_one_process(tmp_path):
    script = tmp_path / "ddp_script.py"
    script.write_text(SCRIPT.format(tests=str(TESTS)))
    ddp_run, one_run = tmp_path / "ddp", tmp_path / "one"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(script),
        str(ddp_run),
        "4",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "rank 0 step 16" in out.stdout and "rank 1 step 16" in out.stdout
    one = subprocess.run(
        [sys.executable, str(script), str(one_run), "8"], capture_output=True, text=True, timeout=120
    )
    assert one.returncode == 0, one.stderr[-3000:]

    r0, r1 = load_file(ddp_run / "rank0.safetensors"), load_file(ddp_run / "rank1.safetensors")
    single = load_file(one_run / "rank0.safetensors")
    for k in r0:
        assert torch.equal(r0[k], r1[k]), f"ranks diverged at {k}"
        torch.testing.assert_close(r0[k], single[k], rtol=1e-4, atol=1e-5)
    # only rank 0 wrote checkpoints and metrics, with the world size recorded
    c = ck.load_checkpoint(ddp_run)
    assert c.step == 16 and c.meta["world_size"] == 2
    assert len((ddp_run / "metrics.jsonl").read_text().splitlines()) == 2
