"""How well each heatmap of a trained model localises the joints (a diagnostic of the book model).

    python tools/readout_check.py [--checkpoint models/book-tiny] [--n 512]

On the 512 validation samples of the book recipe (procedural seed 1) it prints the 2D EPE in
pixels of the 128x128 crop, for all / visible / hidden joints, of

- ``lhr``: the model's answer, the LHR expectation of the latent maps (what ``handpose eval``
  reports);
- ``latent argmax``: the best cell of each latent map (the read-out LHR replaces);
- ``block1..block4 argmax``: the best cell of each Unet-Block's deeply supervised heatmap
  (8x8, 16x16, 32x32, 64x64 for a 128 input), at its cell centre.

A model whose supervised heatmaps localise well but whose LHR does not has a read-out problem;
one whose every map is poor has a feature (training) problem. ``models/README.md`` has the book
model's numbers. Also prints the learned LHR inverse temperatures beta.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from handpose_lib.data.cached import VAL_SEED  # noqa: E402
from handpose_lib.data.rendered import cached_synthetic  # noqa: E402
from handpose_lib.data.sample import collate  # noqa: E402
from handpose_lib.data.synthetic import SyntheticConfig  # noqa: E402
from handpose_lib.inference import load_trained  # noqa: E402
from handpose_lib.lhr import argmax_decode  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=str(REPO / "models" / "book-tiny"))
    ap.add_argument("--n", type=int, default=512, help="validation samples (at most 512)")
    a = ap.parse_args(argv)

    model, _ = load_trained(a.checkpoint)
    model.eval()
    size = model.config.input_size
    val = cached_synthetic(512, VAL_SEED, SyntheticConfig(crop_size=size), progress=False)
    names = ["lhr", "latent argmax", "block1 argmax", "block2 argmax", "block3 argmax", "block4 argmax"]
    errs: dict[str, list[torch.Tensor]] = {k: [] for k in names}
    visible = []
    with torch.inference_mode():
        for b in DataLoader(Subset(val, range(min(a.n, 512))), batch_size=64, collate_fn=collate):
            out = model(b["image"])
            preds = [out.coords2d, argmax_decode(out.heatmaps, size)]
            preds += [argmax_decode(h, size) for h in out.intermediate]
            for k, p in zip(names, preds):
                errs[k].append((p - b["joints2d"]).norm(dim=-1))
            visible.append(b["visible"].bool())
    vis = torch.cat(visible)
    print(f"{a.checkpoint}: 2D EPE in px on {vis.shape[0]} validation samples")
    print(f"{'read-out':<16}{'all':>8}{'visible':>9}{'hidden':>8}{'median':>8}")
    for k in names:
        e = torch.cat(errs[k])
        print(f"{k:<16}{e.mean():8.2f}{e[vis].mean():9.2f}{e[~vis].mean():8.2f}{e.median():8.2f}")
    print("LHR beta per joint:", [round(v, 2) for v in model.lhr.beta.detach().tolist()])
    return 0


if __name__ == "__main__":
    sys.exit(main())
