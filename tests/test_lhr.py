"""Latent Heatmap Representation: eq. 1 (softmax with beta) and eq. 2 (expected coordinate)."""

import math

import pytest
import torch

from handpose_lib.lhr import LatentHeatmap2D, argmax_decode, cell_centres, soft_argmax_2d


def test_cell_centres_pixel_edge_convention():
    # 4 cells over 128 px: centres at 16, 48, 80, 112
    assert torch.equal(cell_centres(4, 128.0), torch.tensor([16.0, 48.0, 80.0, 112.0]))


def test_peaked_heatmap_gives_the_peak_cell_centre():
    latent = torch.zeros(2, 21, 64, 64)
    rows = torch.randint(0, 64, (2, 21))
    cols = torch.randint(0, 64, (2, 21))
    for b in range(2):
        for j in range(21):
            latent[b, j, rows[b, j], cols[b, j]] = 1000.0  # exp(-1000) == 0: a one-hot map
    coords, probs = soft_argmax_2d(latent, torch.ones(21), 128)
    expected = torch.stack(((cols + 0.5) * 2.0, (rows + 0.5) * 2.0), dim=-1)  # cell k -> (k+0.5)*128/64
    assert torch.equal(coords, expected)
    assert probs.shape == (2, 21, 64, 64)
    assert torch.all(probs.amax(dim=(-2, -1)) == 1.0)


def test_uniform_heatmap_gives_the_image_centre():
    coords, probs = soft_argmax_2d(torch.zeros(3, 21, 64, 64), torch.ones(21), 128)
    assert torch.allclose(coords, torch.full((3, 21, 2), 64.0), atol=1e-4)
    torch.testing.assert_close(probs.sum(dim=(-2, -1)), torch.ones(3, 21))
    # non-square: image_size is (height, width); coords are (x, y)
    coords, _ = soft_argmax_2d(torch.zeros(1, 2, 8, 16), torch.ones(2), (64, 160))
    assert torch.allclose(coords, torch.tensor([80.0, 32.0]).expand(1, 2, 2), atol=1e-4)


def test_coordinates_stay_inside_the_image():
    coords, probs = soft_argmax_2d(10 * torch.randn(4, 21, 64, 64), torch.ones(21), 128)
    assert coords.min() >= 0 and coords.max() <= 128
    torch.testing.assert_close(probs.sum(dim=(-2, -1)), torch.ones(4, 21))


def test_gradcheck_float64():
    latent = torch.randn(2, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    beta = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda lat, b: soft_argmax_2d(lat, b, (20, 24)), (latent, beta))


def test_beta_is_learnable_positive_and_controls_the_spread():
    lhr = LatentHeatmap2D(num_joints=21, init_beta=1.0)
    assert [n for n, _ in lhr.named_parameters()] == ["log_beta"]
    torch.testing.assert_close(lhr.beta, torch.ones(21))
    # a smooth bump: a larger beta concentrates the probability (smaller spread)
    ys, xs = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    bump = -((xs - 20) ** 2 + (ys - 40) ** 2) / 200.0
    latent = bump.expand(1, 21, 64, 64)

    def spread(probs):
        return (probs * ((xs - 20) ** 2 + (ys - 40) ** 2)).sum(dim=(-2, -1))

    with torch.no_grad():
        lhr.log_beta[:10] = math.log(4.0)
    _, probs = lhr(latent, 128)
    assert torch.all(spread(probs)[0, :10] < 0.3 * spread(probs)[0, 10:].min())
    # and it learns: fit a sharper target distribution with beta alone
    lhr = LatentHeatmap2D(21)
    target = torch.softmax(3.0 * latent.flatten(2), -1).reshape(latent.shape)
    opt = torch.optim.Adam(lhr.parameters(), lr=0.1)
    for _ in range(60):
        _, probs = lhr(latent, 128)
        loss = (probs - target).pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.testing.assert_close(lhr.beta, torch.full((21,), 3.0), atol=0.1, rtol=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_and_half_inputs_compute_in_float32(dtype):
    latent = (5 * torch.randn(2, 21, 64, 64)).to(dtype)
    ref, _ = soft_argmax_2d(latent.float(), torch.ones(21), 128)
    coords, probs = soft_argmax_2d(latent, torch.ones(21, dtype=dtype), 128)
    assert coords.dtype == torch.float32 and probs.dtype == torch.float32
    torch.testing.assert_close(coords, ref, atol=1e-4, rtol=0)  # the same float32 computation
    lhr = LatentHeatmap2D(21)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        coords, probs = lhr(latent.to(dtype), 128)
    assert coords.dtype == torch.float32
    torch.testing.assert_close(probs.sum(dim=(-2, -1)), torch.ones(2, 21))


def test_bad_shapes_are_reported():
    with pytest.raises(ValueError, match=r"\(B, 21, h, w\)"):
        LatentHeatmap2D(21)(torch.zeros(1, 20, 8, 8), 128)
    with pytest.raises(ValueError, match="latent must be"):
        soft_argmax_2d(torch.zeros(21, 8, 8), torch.ones(21), 128)
    with pytest.raises(ValueError, match="positive"):
        LatentHeatmap2D(21, init_beta=0.0)


def test_argmax_decode_cell_centres():
    hm = torch.zeros(1, 2, 8, 8)
    hm[0, 0, 5, 3] = 1.0  # row 5, column 3
    hm[0, 1, 0, 7] = 2.0
    c = argmax_decode(hm, 128)
    assert torch.allclose(c[0, 0], torch.tensor([3.5 * 16, 5.5 * 16]))
    assert torch.allclose(c[0, 1], torch.tensor([7.5 * 16, 0.5 * 16]))


def test_argmax_decode_best_cell_centre_on_square_and_rectangular_maps():
    maps = torch.zeros(2, 3, 8, 8)
    maps[0, 0, 2, 5] = 1.0  # row 2, column 5 of an 8x8 map on a 128 image: cells of 16 px
    maps[0, 1, 7, 0] = 3.0
    maps[0, 2, 0, 7] = -1.0  # all other cells 0 -> the first cell (0, 0) wins
    maps[1] = -maps[0]
    maps[1, 0, 4, 4] = 9.0
    xy = argmax_decode(maps, 128)
    assert xy.shape == (2, 3, 2)
    torch.testing.assert_close(xy[0, 0], torch.tensor([5.5 * 16, 2.5 * 16]))
    torch.testing.assert_close(xy[0, 1], torch.tensor([0.5 * 16, 7.5 * 16]))
    torch.testing.assert_close(xy[0, 2], torch.tensor([8.0, 8.0]))
    torch.testing.assert_close(xy[1, 0], torch.tensor([4.5 * 16, 4.5 * 16]))
    # a non-square map scales x and y separately
    rect = torch.zeros(1, 1, 4, 16)
    rect[0, 0, 3, 15] = 1.0
    torch.testing.assert_close(argmax_decode(rect, 128)[0, 0], torch.tensor([15.5 * 8, 3.5 * 32]))
