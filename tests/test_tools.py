"""The diagnostics in tools/ (the parts that compute something)."""

import importlib.util
from pathlib import Path

import torch

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_readout_argmax_is_the_best_cells_centre_in_input_pixels():
    rc = _load("readout_check")
    maps = torch.zeros(2, 3, 8, 8)
    maps[0, 0, 2, 5] = 1.0  # row 2, column 5 of an 8x8 map on a 128 image: cells of 16 px
    maps[0, 1, 7, 0] = 3.0
    maps[0, 2, 0, 7] = -1.0  # all other cells 0 -> the first cell (0, 0) wins
    maps[1] = -maps[0]
    maps[1, 0, 4, 4] = 9.0
    xy = rc.argmax_coords(maps, 128)
    assert xy.shape == (2, 3, 2)
    torch.testing.assert_close(xy[0, 0], torch.tensor([5.5 * 16, 2.5 * 16]))
    torch.testing.assert_close(xy[0, 1], torch.tensor([0.5 * 16, 7.5 * 16]))
    torch.testing.assert_close(xy[0, 2], torch.tensor([8.0, 8.0]))
    torch.testing.assert_close(xy[1, 0], torch.tensor([4.5 * 16, 4.5 * 16]))
    # a non-square map scales x and y separately
    rect = torch.zeros(1, 1, 4, 16)
    rect[0, 0, 3, 15] = 1.0
    torch.testing.assert_close(rc.argmax_coords(rect, 128)[0, 0], torch.tensor([15.5 * 8, 3.5 * 32]))
