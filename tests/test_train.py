"""train.py: the loop on a small stand-in model (32x32 images): metrics, checkpoints, exact resume,
stop signals, NaN handling, schedules and configs. The real ResUnet is exercised in test_cli.py."""

import json
import math
import os
import re
import signal
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from handpose_lib import checkpoint as ck
from handpose_lib import config, skeleton
from handpose_lib import train as tr
from handpose_lib.config import ConfigError, TrainConfig, make_optimizer
from handpose_lib.data.augment import TrainView
from handpose_lib.data.sample import make_sample

S = 32  # image side


class FakeHands(torch.utils.data.Dataset):
    """Deterministic samples: random images whose joints are a function of the image."""

    def __init__(self, n, seed=0):
        self.n, self.seed = n, seed
        g = np.random.default_rng(123)
        self.w2 = g.normal(0, 1, (3, 42))
        self.base3 = g.normal(0, 20, (21, 3))

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        g = np.random.default_rng([self.seed, i])
        img = g.uniform(0, 1, (3, S, S)).astype(np.float32)
        feat = img.reshape(3, -1).mean(1) - 0.5
        j2 = (S / 2 + 8 * np.tanh(feat @ self.w2)).reshape(21, 2)
        j3 = self.base3 * (1 + feat.sum()) + np.array([0, 0, 300.0])
        j3[10] = j3[9] + np.array([0, 40.0, 0])  # a fixed reference bone
        vis = (np.arange(21) % 3 == 0).astype(int)  # some joints "hidden by object"
        return make_sample(
            torch.from_numpy(img), j2, j3, np.eye(3), dataset="fake", sample_id=i, visibility=vis
        )


@dataclass
class Out:
    coords2d: torch.Tensor
    joints3d: torch.Tensor


class StandIn(nn.Module):
    """conv -> pooled features -> 2D and 3D heads; no BatchNorm (so DDP == one big batch)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc2 = nn.Linear(8, 42)
        self.fc3 = nn.Linear(8, 63)

    def forward(self, x):
        f = torch.relu(self.conv(x)).mean((2, 3))
        return Out(S / 2 + self.fc2(f).view(-1, 21, 2), self.fc3(f).view(-1, 21, 3))


def standin_loss(out, batch):
    norm, _ = skeleton.normalise_3d(batch["joints3d"])
    l2 = ((out.coords2d - batch["joints2d"]) / S).pow(2).mean()
    l3 = (out.joints3d - norm).pow(2).mean()
    return l2 + l3, {"total": l2 + l3, "coords2d": l2, "joints3d": l3}


def noisy(sample, rng):
    """An augmentation that uses the per-sample generator."""
    s = dict(sample)
    s["image"] = (
        sample["image"] + torch.from_numpy(rng.normal(0, 0.05, (3, S, S)).astype(np.float32))
    ).clamp(0, 1)
    return s


def cfg(**kw):
    base = dict(
        n_train=64,
        n_val=16,
        epochs=2,
        batch_size=8,
        lr=1e-2,
        num_workers=0,
        device="cpu",
        augment=False,
        ckpt_every_min=60.0,
        log_every=1,
    )
    base.update(kw)
    return TrainConfig(**base)


def _fit(c, run, **kw):
    torch.manual_seed(c.seed)
    model = StandIn()
    view = kw.pop("view", None)
    data = FakeHands(c.n_train) if view is None else view
    return model, tr.fit(
        model, data, FakeHands(c.n_val, seed=1), c, run, loss_fn=standin_loss, progress=False, **kw
    )


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_fit_logs_metrics_and_checkpoints(tmp_path):
    model, res = _fit(cfg(), tmp_path / "run")
    assert res.finished and res.step == 16
    rows = ck.read_metrics(tmp_path / "run")
    assert [r["epoch"] for r in rows] == [1, 2]
    for key in (
        "train_total",
        "val_total",
        "val_epe2d_px",
        "val_epe3d_mm",
        "val_auc3d_20_50",
        "val_auc2d_0_30",
        "val_visible_epe2d_px",
        "val_hidden_auc3d_20_50",
        "img_per_s",
    ):
        assert key in rows[-1] and math.isfinite(rows[-1][key]), key
    assert rows[-1]["train_total"] < rows[0]["train_total"] * 1.5
    c = ck.load_checkpoint(tmp_path / "run")
    assert c.step == 16 and c.meta["train_config"]["batch_size"] == 8 and c.resumable
    assert c.meta["metrics"]["val_epe2d_px"] == pytest.approx(rows[-1]["val_epe2d_px"])
    assert (tmp_path / "run" / "config.json").is_file()


def test_best_json_names_the_epoch_with_the_lowest_validation_3d_epe(tmp_path, monkeypatch):
    """best.json follows the validation 3D EPE (scripted here: 5, 3, 4 mm), survives pruning
    (keep_last=1) and a resume, and is what `--which best` loads."""
    scripted = iter([5.0, 3.0, 4.0])
    monkeypatch.setattr(tr, "validate", lambda *a, **k: {"val_epe3d_mm": next(scripted)})
    run = tmp_path / "run"
    _, part = _fit(cfg(epochs=3, keep_last=1, max_steps=20), run)  # stops in epoch 3 (8 steps each)
    assert part.step == 20 and json.loads((run / ck.BEST_FILE).read_text())["step"] == 16
    _, res = _fit(cfg(epochs=3, keep_last=1), run, resume=True)  # epoch 3's 4 mm is no better
    assert res.finished and [r["val_epe3d_mm"] for r in res.history] == [5.0, 3.0, 4.0]
    best = json.loads((run / ck.BEST_FILE).read_text())
    assert (
        best["metric"] == "val_epe3d_mm" and best["value"] == 3.0 and (best["epoch"], best["step"]) == (2, 16)
    )
    assert ck.load_checkpoint(run, which="best").step == 16 and ck.load_checkpoint(run).step == 24
    kept = sorted(p.name for p in (run / ck.CKPT_SUBDIR).iterdir())
    assert kept == ["step-00000016", "step-00000024"]


def test_resume_is_exact(tmp_path):
    c = cfg(epochs=3)
    view = TrainView(FakeHands(64), noisy, seed=0)
    straight, _ = _fit(c, tmp_path / "a", view=view)
    # stop mid-epoch (step 11 of 24), resume with DataLoader workers this time
    _, part = _fit(cfg(epochs=3, max_steps=11), tmp_path / "b", view=view)
    assert not part.finished and part.step == 11 and part.stopped_by == "max_steps"
    resumed, res = _fit(cfg(epochs=3, num_workers=2), tmp_path / "b", view=view, resume=True)
    assert res.finished and res.step == 24
    a, b = _weights(straight), _weights(resumed)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_measure_cpu_amp_times_a_copy_and_leaves_the_model_alone():
    from handpose_lib import device

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    net(torch.zeros(1, 3, 8, 8))
    x = torch.rand(4, 3, 8, 8)
    before, rng = _weights(net), torch.get_rng_state()
    got = device.measure_cpu_amp(net, x, passes=2)
    after = _weights(net)
    assert all(torch.equal(before[k], after[k]) for k in before)  # BatchNorm statistics too
    assert torch.equal(rng, torch.get_rng_state()) and all(p.grad is None for p in net.parameters())
    assert got["choice"] in ("off", "bf16")
    if device.cpu_bf16_supported():
        assert got["fp32_img_s"] > 0 and got["bf16_img_s"] > 0 and got["passes"] == 2
        assert got["choice"] == ("bf16" if got["bf16_img_s"] > got["fp32_img_s"] else "off")
    else:
        assert got == {"choice": "off", "fp32_img_s": None, "bf16_img_s": None, "passes": 0}
    # outputs of every shape a model returns: tensors in dicts, lists and dataclasses
    o = Out(torch.ones(2), torch.ones(3))
    assert [t.numel() for t in device._tensors({"a": [o, torch.ones(1)]})] == [2, 3, 1]


def test_amp_measure_trains_with_the_measured_choice_and_keeps_it_on_resume(tmp_path, monkeypatch):
    calls = []

    def fake(model, x):
        calls.append(tuple(x.shape))
        return {"choice": "bf16", "fp32_img_s": 10.0, "bf16_img_s": 20.0, "passes": 3}

    monkeypatch.setattr(tr, "measure_cpu_amp", fake)
    _, part = _fit(cfg(amp="measure", max_steps=3), tmp_path / "r")
    assert calls == [(8, 3, 128, 128)]  # the recipe's batch at the model's input size
    side = json.loads((tmp_path / "r" / "config.json").read_text())
    assert side["train_config"]["amp"] == "measure" and side["amp_measured"]["choice"] == "bf16"
    assert part.step == 3
    # a resumed run does not measure again: it keeps the recorded choice
    monkeypatch.setattr(tr, "measure_cpu_amp", lambda *a: pytest.fail("measured again on resume"))
    _, res = _fit(cfg(amp="measure"), tmp_path / "r", resume=True)
    assert res.finished
    assert json.loads((tmp_path / "r" / "config.json").read_text())["amp_measured"]["bf16_img_s"] == 20.0


def test_init_from_starts_a_new_run_from_another_runs_weights(tmp_path):
    first, _ = _fit(cfg(epochs=1), tmp_path / "stage1")
    # stage 2 with 0 effective lr: the weights it starts from are exactly stage 1's
    frozen, _ = _fit(cfg(epochs=1, lr=0.0, init_from=str(tmp_path / "stage1")), tmp_path / "stage2")
    a, b = _weights(first), _weights(frozen)
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = ck.load_checkpoint(tmp_path / "stage2")
    assert c.step == 8  # a new run: its own step count, not stage 1's
    src = ck.load_checkpoint(tmp_path / "stage1")
    assert c.meta["init_from"]["step"] == src.step == 8
    assert c.meta["init_from"]["sha256"] == src.meta["files"][ck.MODEL_FILE]["sha256"]
    # the record survives a resume; a missing source is a clear error
    c3 = cfg(epochs=2, init_from=str(tmp_path / "stage1"))
    _fit(TrainConfig(**{**c3.to_dict(), "max_steps": 4}), tmp_path / "s3")
    _fit(c3, tmp_path / "s3", resume=True)
    assert ck.load_checkpoint(tmp_path / "s3").meta["init_from"]["step"] == 8
    with pytest.raises(ck.CheckpointError, match="does not exist"):
        _fit(cfg(init_from=str(tmp_path / "nowhere")), tmp_path / "s4")


def test_stop_signal_saves_a_checkpoint_then_resume(tmp_path):
    def send_term(step, info):
        if step == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    old = signal.getsignal(signal.SIGTERM)
    _, res = _fit(cfg(), tmp_path / "r", on_step=send_term)
    assert signal.getsignal(signal.SIGTERM) is old  # handler restored
    assert not res.finished and res.stopped_by == "SIGTERM" and res.step == 3
    c = ck.load_checkpoint(tmp_path / "r")
    assert c.step == 3 and "SIGTERM" in c.meta["reason"]
    _, res2 = _fit(cfg(), tmp_path / "r", resume=True)
    assert res2.finished and res2.step == 16


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    calls = {"n": 0}

    def sometimes_nan(out, batch):
        calls["n"] += 1
        total, parts = standin_loss(out, batch)
        if calls["n"] == 11:  # step 9 (after epoch 1's 8 training steps and 2 validation batches)
            total = total * float("nan")
        return total, parts

    model = StandIn()
    with pytest.raises(tr.NonFiniteLossError, match=r"step 9 .*epoch 2.*last good checkpoint.*step-00000008"):
        tr.fit(
            model,
            FakeHands(64),
            FakeHands(16, 1),
            cfg(),
            tmp_path / "n",
            loss_fn=sometimes_nan,
            progress=False,
        )
    c = ck.load_checkpoint(tmp_path / "n")
    assert c.step == 8 and all(torch.isfinite(v).all() for v in c.weights.values())


@pytest.mark.parametrize("grad_clip", [5.0, 0.0])
def test_nonfinite_gradients_stop_before_the_optimiser_step(tmp_path, grad_clip):
    """A finite loss whose gradients are inf (e.g. a sqrt at 0) must not reach AdamW."""
    calls = {"n": 0}

    def inf_grads(out, batch):
        calls["n"] += 1
        total, parts = standin_loss(out, batch)
        if calls["n"] == 11:  # step 9, as above
            out.coords2d.register_hook(lambda g: g * float("inf"))
        return total, parts

    model = StandIn()
    seen = {}

    def remember(step, info):
        seen["weights"] = _weights(model)

    msg = r"gradients. norm became (inf|nan).* step 9 .*step-00000008"
    with pytest.raises(tr.NonFiniteLossError, match=msg):
        tr.fit(
            model,
            FakeHands(64),
            FakeHands(16, 1),
            cfg(grad_clip=grad_clip),
            tmp_path / "g",
            loss_fn=inf_grads,
            progress=False,
            on_step=remember,
        )
    after = _weights(model)
    assert all(torch.isfinite(v).all() for v in after.values())
    assert all(torch.equal(after[k], seen["weights"][k]) for k in after)  # step 9 changed nothing
    assert ck.load_checkpoint(tmp_path / "g").step == 8


def test_run_folder_guards(tmp_path):
    with pytest.raises(ck.CheckpointError, match="no checkpoint to resume"):
        _fit(cfg(), tmp_path / "x", resume=True)
    _fit(cfg(epochs=1), tmp_path / "y")
    with pytest.raises(ck.CheckpointError, match="--resume"):
        _fit(cfg(epochs=1), tmp_path / "y")
    with pytest.raises(ConfigError, match="batch_size: 8 there, 4 now"):
        _fit(cfg(epochs=1, batch_size=4), tmp_path / "y", resume=True)
    # another schedule length (or lr) would not continue the run exactly: refused, with the way
    # to train on; bookkeeping (workers, checkpoint interval) may change
    with pytest.raises(ConfigError, match=r"epochs: 1 there, 2 now.*--init-from"):
        _fit(cfg(epochs=2), tmp_path / "y", resume=True)
    with pytest.raises(ConfigError, match="lr: 0.01 there, 0.001 now"):
        _fit(cfg(epochs=1, lr=1e-3), tmp_path / "y", resume=True)
    _, res = _fit(cfg(epochs=1, num_workers=1, ckpt_every_min=5.0), tmp_path / "y", resume=True)
    assert res.finished and res.step == 8
    # a run of 2 DDP processes resumed by one: another data order and epoch length
    sidecar = ck.resolve_checkpoint(tmp_path / "y") / ck.SIDECAR_FILE
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "world_size": 2}))
    with pytest.raises(ConfigError, match=r"2 process\(es\), this is 1.*--nproc_per_node 2"):
        _fit(cfg(epochs=1), tmp_path / "y", resume=True)
    with pytest.raises(ConfigError, match="fewer than one batch"):
        _fit(cfg(n_train=4), tmp_path / "z")


def test_resume_drops_the_log_row_of_an_epoch_that_has_no_checkpoint(tmp_path):
    """Killed after epoch 2's row was logged but before its checkpoint: the resumed run redoes
    epoch 2, and the curve holds it once."""
    run = tmp_path / "k"
    _fit(cfg(keep_last=3), run)
    assert [r["step"] for r in ck.read_metrics(run)] == [8, 16]
    ck.atomic_write_json(run / ck.LAST_FILE, {"path": "checkpoints/step-00000008", "step": 8})
    _, res = _fit(cfg(keep_last=3), run, resume=True)
    assert res.finished and res.step == 16
    rows = ck.read_metrics(run)
    assert [(r["epoch"], r["step"]) for r in rows] == [(1, 8), (2, 16)]
    assert [r["epoch"] for r in res.history] == [1, 2]


def test_progress_bar_shows_loss_and_throughput(tmp_path, capsys):
    torch.manual_seed(0)
    tr.fit(StandIn(), FakeHands(64), None, cfg(epochs=1), tmp_path / "p", loss_fn=standin_loss, progress=True)
    err = capsys.readouterr().err  # tqdm.auto: a text bar on stderr outside Jupyter
    assert "train: 100%" in err and "8/8" in err
    assert re.search(r"loss=\d+\.\d{4}", err) and re.search(r"img_s=\d+", err) and "lr=" in err


def test_weight_decay_only_on_conv_and_linear_weights():
    from handpose_lib import model as hm

    m = hm.build_model(hm.tiny_config())
    opt = make_optimizer(m, cfg(weight_decay=1e-4))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 1e-4 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in m.named_parameters()}
    assert all(p.ndim >= 2 for p in decay["params"])
    undecayed = {names[id(p)] for p in no_decay["params"]}
    assert "lhr.log_beta" in undecayed and any(n.endswith(".bias") for n in undecayed)
    assert any("bn" in n or "norm" in n or "downsample.1" in n for n in undecayed)
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(m.parameters()))


def test_train_view_augmentation_is_keyed_by_epoch_and_index():
    v = TrainView(FakeHands(4), noisy, seed=3)
    assert torch.equal(v[(1, 2)]["image"], v[(1, 2)]["image"])
    assert not torch.equal(v[(1, 2)]["image"], v[(2, 2)]["image"])


def test_val_real_logs_the_real_photo_metrics_beside_the_procedural_ones(tmp_path):
    class Sized(StandIn):
        config = SimpleNamespace(input_size=S)  # real_photos_metrics crops to the model's size

    torch.manual_seed(0)
    model = Sized()
    c = cfg(epochs=1, val_real=True)
    tr.fit(model, FakeHands(c.n_train), FakeHands(c.n_val, seed=1), c, tmp_path / "r", loss_fn=standin_loss,
           progress=False)  # fmt: skip
    row = ck.read_metrics(tmp_path / "r")[-1]
    assert math.isfinite(row["val_epe2d_px"])  # the procedural validation is still there
    from handpose_lib.evaluate import real_photos_metrics

    want = real_photos_metrics(model)
    for key in ("epe2d_px", "epe2d_image_px", "pck_0.2", "pck_0.2_freihand", "pck_0.2_panoptic"):
        assert row["val_real_" + key] == pytest.approx(want["val_real_" + key]), key
    assert 0 <= row["val_real_pck_0.2"] <= 1


def test_freihand_trains_without_its_optional_evaluation_split(tmp_path, capsys):
    from handpose_lib.data.examples import write_freihand

    write_freihand(tmp_path, n_labels=2, versions=2)  # training/ only, as the training zip has it
    cfg = TrainConfig(data="freihand", data_root=str(tmp_path))
    train_set, val_set = config.build_datasets(cfg)
    assert len(train_set) == 4 and val_set is None
    assert "training without validation" in capsys.readouterr().err
    stb = TrainConfig(data="stb", data_root=str(tmp_path))  # STB's test split is not optional
    with pytest.raises(FileNotFoundError):
        config.build_datasets(stb)


def test_a_copied_run_without_last_json_or_a_file_is_not_trained_into(tmp_path):
    import shutil

    _fit(cfg(epochs=1), tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "copy")
    (tmp_path / "copy" / ck.LAST_FILE).unlink()
    config_before = (tmp_path / "copy" / "config.json").read_text()
    with pytest.raises(ck.CheckpointError, match=r"files of another training run \(config.json, metrics"):
        _fit(cfg(epochs=1, lr=1e-3), tmp_path / "copy")
    assert (tmp_path / "copy" / "config.json").read_text() == config_before
    (tmp_path / "f").write_text("mine")
    with pytest.raises(FileExistsError, match="is a file"):
        _fit(cfg(epochs=1), tmp_path / "f")


def test_resuming_keeps_the_command_that_started_the_run(tmp_path):
    run = tmp_path / "r"
    _fit(cfg(epochs=1, max_steps=3), run, extra_meta={"provenance": {"command": "first"}})
    _fit(cfg(epochs=1), run, resume=True, extra_meta={"provenance": {"command": "second"}})
    prov = ck.load_checkpoint(run).meta["provenance"]
    assert prov == {"command": "first", "resumed_by": ["second"]}
    config_json = (run / "config.json").read_text()
    _fit(cfg(epochs=1), run, resume=True, extra_meta={"provenance": {"command": "third"}})  # finished
    assert (run / "config.json").read_text() == config_json
    assert ck.load_checkpoint(run).meta["provenance"] == prov


def test_an_interrupted_epoch_logs_the_same_training_loss(tmp_path):
    view = TrainView(FakeHands(64), noisy, seed=0)
    _fit(cfg(epochs=3), tmp_path / "a", view=view)
    _fit(cfg(epochs=3, max_steps=11), tmp_path / "b", view=view)  # stops in epoch 2 (8 steps each)
    _fit(cfg(epochs=3), tmp_path / "b", view=view, resume=True)
    straight, resumed = ck.read_metrics(tmp_path / "a"), ck.read_metrics(tmp_path / "b")
    keys = [k for k in straight[0] if k.startswith("train_")]
    assert keys and [[r[k] for k in keys] for r in resumed] == [[r[k] for k in keys] for r in straight]


def test_a_failed_run_leaves_no_folder_behind(tmp_path):
    run = tmp_path / "runs" / "new" / "x"
    with pytest.raises(RuntimeError), tr._undone_if_failed(run):
        (run / "checkpoints").mkdir(parents=True)
        (run / "config.json").write_text("{}")
        raise RuntimeError("data set missing")
    assert not (tmp_path / "runs").exists()
    mine = tmp_path / "mine"  # a folder the user made, with a file of theirs
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(RuntimeError), tr._undone_if_failed(mine):
        (mine / "config.json").write_text("{}")
        raise RuntimeError("NaN")
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
