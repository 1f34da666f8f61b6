import numpy as np
import pytest
import torch

from handpose_lib import skeleton as sk


def random_hands(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(scale=40.0, size=(n, 21, 3))


def test_tables_are_consistent():
    assert len(sk.JOINT_NAMES) == sk.NUM_JOINTS == len(sk.PARENTS)
    assert len(sk.BONES) == sk.NUM_BONES == len(sk.BONE_NAMES) == len(sk.BONE_COLORS)
    assert all(sk.PARENTS[j] < j for j in range(1, 21))
    assert sk.BONES[0] == (0, 1) and sk.BONES[19] == (19, 20)
    assert sk.PATH_MATRIX.shape == (21, 20)
    # each finger tip is four bones away from the wrist
    assert sk.PATH_MATRIX[[4, 8, 12, 16, 20]].sum(1).tolist() == [4] * 5
    assert sk.joint_finger(0) == "wrist" and sk.joint_finger(12) == "middle"


def test_joints_to_bones_eq3_by_hand():
    j = np.zeros((21, 3))
    j[1] = [1, 2, 3]
    j[2] = [2, 2, 5]
    b = sk.joints_to_bones(j)
    assert b.shape == (20, 3)
    np.testing.assert_allclose(b[0], [1, 2, 3])  # thumb CMC - wrist
    np.testing.assert_allclose(b[1], [1, 0, 2])  # thumb MCP - thumb CMC


def test_round_trip_numpy_and_root():
    j = random_hands(8)
    b = sk.joints_to_bones(j)
    back = sk.bones_to_joints(b, root=j[:, 0])
    np.testing.assert_allclose(back, j, atol=1e-9)
    rel = sk.bones_to_joints(b)
    np.testing.assert_allclose(rel, j - j[:, :1], atol=1e-9)


def test_round_trip_torch_batched_and_grad():
    j = torch.tensor(random_hands(6).reshape(2, 3, 21, 3), requires_grad=True)
    b = sk.joints_to_bones(j)
    assert b.shape == (2, 3, 20, 3)
    back = sk.bones_to_joints(b, root=j[..., 0, :])
    torch.testing.assert_close(back, j)
    bones = torch.randn(4, 20, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: sk.bones_to_joints(x), (bones,))
    out = sk.bones_to_joints(bones)
    out[:, 4].sum().backward()  # thumb tip depends on the four thumb bones only
    g = bones.grad.abs().sum(dim=(0, 2))
    assert (g[:4] > 0).all() and (g[4:] == 0).all()


def test_bones_to_joints_equals_chain_sum():
    b = random_hands(1)[0][:20]
    j = sk.bones_to_joints(b)
    for joint in range(1, 21):
        chain, k = [], joint
        while k > 0:
            chain.append(k - 1)
            k = sk.PARENTS[k]
        np.testing.assert_allclose(j[joint], b[chain].sum(0))


def test_torch_numpy_agree():
    b = random_hands(3)[:, :20]
    np.testing.assert_allclose(sk.bones_to_joints(torch.tensor(b)).numpy(), sk.bones_to_joints(b))
    j = random_hands(3)
    np.testing.assert_allclose(sk.bone_lengths(torch.tensor(j)).numpy(), sk.bone_lengths(j))


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match=r"\(\.\.\., 21, D\)"):
        sk.joints_to_bones(np.zeros((20, 3)))
    with pytest.raises(ValueError, match="20"):
        sk.bones_to_joints(np.zeros((21, 3)))


def _named_hand():
    # canonical hand where joint k sits at (k, 10k, 100k): positions identify the joints
    k = np.arange(21, dtype=float)
    return np.stack([k, 10 * k, 100 * k], axis=1)


def test_reorder_maps_on_known_positions():
    canon = _named_hand()
    # STB file order: palm, little MCP..tip, ring, middle, index, thumb
    stb_order = (
        [0] + list(range(17, 21)) + list(range(13, 17)) + list(range(9, 13)) + [5, 6, 7, 8] + [1, 2, 3, 4]
    )
    stb = canon[stb_order]
    np.testing.assert_array_equal(sk.to_canonical(stb, "stb"), canon)
    # RHD: wrist, then each finger tip -> MCP; right hand at +21
    rhd_hand = canon[[0, 4, 3, 2, 1, 8, 7, 6, 5, 12, 11, 10, 9, 16, 15, 14, 13, 20, 19, 18, 17]]
    rhd42 = np.concatenate([np.zeros((21, 3)), rhd_hand])
    np.testing.assert_array_equal(sk.to_canonical(rhd42, "rhd", offset=21), canon)
    # InterHand: per finger tip first, wrist last
    ih = np.concatenate(
        [canon[[4, 3, 2, 1, 8, 7, 6, 5, 12, 11, 10, 9, 16, 15, 14, 13, 20, 19, 18, 17]], canon[:1]]
    )
    np.testing.assert_array_equal(sk.to_canonical(ih, "interhand"), canon)
    for name in ("ganerated", "synthhands", "freihand", "mediapipe"):
        np.testing.assert_array_equal(sk.to_canonical(canon, name), canon)
        np.testing.assert_array_equal(sk.from_canonical(sk.to_canonical(stb, "stb"), "stb"), stb)
    with pytest.raises(KeyError):
        sk.to_canonical(canon, "nope")


def test_stb_palm_to_wrist_known_hand():
    j = np.zeros((21, 3))
    j[0] = [0, 10, 0]  # palm centre
    j[13] = [0, 40, 0]  # ring MCP
    j[9] = [0, 50, 0]
    j[5] = [0, 50, 0]
    j[17] = [0, 30, 0]
    np.testing.assert_allclose(sk.stb_palm_to_wrist(j)[0], [0, -20, 0])  # 40 + 2 * (10 - 40)
    np.testing.assert_allclose(sk.stb_palm_to_wrist(j, "middle")[0], [0, 50 + 2.2 * (10 - 50), 0])
    np.testing.assert_allclose(sk.stb_palm_to_wrist(j, "mean_mcp")[0], [0, 42.5 + 2.25 * (10 - 42.5), 0])
    np.testing.assert_allclose(sk.stb_palm_to_wrist(j, "palm")[0], [0, 10, 0])
    assert j[0, 1] == 10  # input untouched
    t = sk.stb_palm_to_wrist(torch.tensor(j))
    np.testing.assert_allclose(t[0].numpy(), [0, -20, 0])
    with pytest.raises(ValueError):
        sk.stb_palm_to_wrist(j, "elbow")


def test_reference_bone_and_mirror():
    j = np.zeros((21, 3))
    j[9] = [0, 0, 0]
    j[10] = [3, 4, 0]
    assert sk.reference_bone_length(j) == pytest.approx(5.0)
    m = sk.mirror_x(j)
    assert m[10, 0] == -3 and j[10, 0] == 3
    uv = np.full((21, 2), 10.0)
    np.testing.assert_allclose(sk.mirror_x(uv, width=128)[:, 0], 118.0)


def test_normalise_denormalise_round_trip():
    j = random_hands(4) + 300.0
    n, ref = sk.normalise_3d(j)
    np.testing.assert_allclose(n[:, 0], 0, atol=1e-12)
    np.testing.assert_allclose(sk.reference_bone_length(n), 1.0)
    np.testing.assert_allclose(sk.denormalise_3d(n, ref, root_mm=j[:, 0]), j)
    nt, reft = sk.normalise_3d(torch.tensor(j))
    np.testing.assert_allclose(nt.numpy(), n)
    np.testing.assert_allclose(sk.denormalise_3d(nt, reft).numpy(), j - j[:, :1])


@pytest.mark.parametrize("hand_model", ["capsule", "mesh"])
def test_chirality_reads_the_side_off_3d_joints(hand_model):
    """On procedural hands of both sides (all pose families, both engines) the sign of the
    chirality is the hand's side, with a wide margin; mirroring flips it, rotating and scaling
    do not; numpy and torch agree."""
    from handpose_lib.data.synthetic import SyntheticConfig, SyntheticHands

    cfg = SyntheticConfig(hand_model=hand_model, left_hand_prob=0.5, crop_size=32)
    b = SyntheticHands(96, 5, cfg).render_batch(range(96))
    j = b["joints3d"].double()
    c = sk.chirality(j)
    assert sk.side_from_3d(j) == list(b["hand_side"])
    assert {"left", "right"} == set(b["hand_side"])
    assert c.abs().min() > 2e4  # mm^3: far from the flat-hand boundary
    assert torch.allclose(sk.chirality(sk.mirror_x(j)), -c)
    rot = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))[
        0
    ]
    rot = rot * torch.linalg.det(rot)  # a proper rotation
    assert (torch.sign(sk.chirality(0.01 * j @ rot.T)) == torch.sign(c)).all()
    assert np.allclose(sk.chirality(j.numpy()), c.numpy())
    with pytest.raises(ValueError, match=r"\(\.\.\., 21, 3\)"):
        sk.chirality(j[..., :2])
