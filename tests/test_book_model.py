"""book_model.py: the book model's stages, packaging it into models/book-tiny, loading it (the
committed model, else a quick one trained once), and the committed model itself."""

import dataclasses
import json

import pytest
import torch
from test_train import FakeHands, S

from handpose_lib import book_model as bm
from handpose_lib import checkpoint as ck
from handpose_lib import train as tr
from handpose_lib.config import ConfigError, same_recipe
from handpose_lib.data.rendered import test_set


class _Fake64(FakeHands):  # FakeHands at 64 px, the smallest input a ResUnet takes
    def __getitem__(self, i):
        s = super().__getitem__(i)
        f = 64 // S
        img = s["image"].repeat_interleave(f, 1).repeat_interleave(f, 2)
        return {**s, "image": img, "joints2d": s["joints2d"] * f}


def _finished_run(run, cfg, m, **meta):
    """A stand-in for a finished run of ``cfg`` (its final checkpoint, no training)."""
    total = bm._total_steps(cfg)
    meta = {"model_config": m.config.to_dict(), "train_config": cfg.to_dict(), "step": total, **meta}
    ck.save_run_checkpoint(run, total, m, meta)
    return ck.load_checkpoint(run)


def test_load_book_model_prefers_book_then_reuses_quick_run(tmp_path, monkeypatch, capsys):
    from types import SimpleNamespace

    from handpose_lib.model import build_model, tiny_config

    m = build_model(tiny_config())
    meta = {"model_config": m.config.to_dict(), "provenance": {"command": "make model"}}
    book, quick = tmp_path / "models" / "book-tiny", tmp_path / "runs" / "quick-book"
    monkeypatch.setattr(bm, "BOOK_MODEL_DIR", book)
    monkeypatch.setattr(bm, "QUICK_RUN_DIR", quick)
    monkeypatch.setattr(bm, "REPO_ROOT", tmp_path)
    calls = []

    def fake_train(cfg, run, resume=False, progress=None):  # stands in for a few minutes of training
        calls.append(run)
        c = _finished_run(run, cfg, m, provenance={"command": "quick"})
        return SimpleNamespace(finished=True, step=c.step)

    monkeypatch.setattr(tr, "train", fake_train)
    _, info = bm.load_book_model("quick")
    assert info["source"] == "quick" and calls == [quick]
    assert "NOTE: the book model" in capsys.readouterr().out
    _, info = bm.load_book_model("quick")  # reused, not retrained
    assert info["source"] == "quick" and len(calls) == 1
    ck.save_checkpoint(book, m, {**meta, "step": 1}, save_rng=False, weights_dtype=torch.float16)
    model, info = bm.load_book_model()
    assert info["source"] == "book" and not model.training and len(calls) == 1
    with pytest.raises(ConfigError, match="HANDPOSE_PROFILE"):
        bm.load_book_model("fast")


def test_same_recipe_ignores_bookkeeping_but_not_the_loss():
    a = bm.book_recipe().to_dict()
    assert same_recipe(a, json.loads(json.dumps(a)))  # tuples vs JSON lists
    assert same_recipe(a, {**a, "threads": 1, "num_workers": 4, "ckpt_every_min": 1.0, "device": "cuda"})
    assert not same_recipe(a, {**a, "loss": {}})
    assert not same_recipe(a, {**a, "epochs": 13})
    assert not same_recipe(a, {**a, "init_from": "x"})
    assert same_recipe(a, {**a, "init_from": "x"}, ignore=("init_from",))


def test_book_stages_continue_from_stage_one(tmp_path):
    (one, c1), (two, c2) = bm.book_v4_stages(tmp_path / "a", tmp_path / "b")
    assert (one, two) == (tmp_path / "a", tmp_path / "b")
    assert c1.init_from is None and c2.init_from == str((tmp_path / "a").resolve())
    assert c2.seed != c1.seed and c2.lr < c1.lr  # other augmentation draws, a lower restart
    changed = ("epochs", "max_steps", "lr", "warmup_frac", "seed", "init_from")
    assert same_recipe(c1.to_dict(), c2.to_dict() | {k: c1.to_dict()[k] for k in changed})
    assert c1.engine == c2.engine == {"hand_model": "mesh", "left_hand_prob": 0.5}  # engine v2
    assert bm.book_v4_stages()[0][0] == bm.BOOK_V4_DIR and bm.book_v4_stages()[1][0] == bm.BOOK_V4_STAGE2_DIR
    assert bm.book_stages() == bm.book_v5_stages()  # the book model: v5, from v4's package
    (v3a, _), (v3b, v3c2) = bm.book_v3_stages()  # version 3 stays reproducible
    assert (v3a, v3b) == (bm.BOOK_RUN_DIR, bm.BOOK_STAGE2_DIR) and v3c2.engine == {}


def test_build_book_model_refuses_a_run_of_another_recipe(tmp_path, monkeypatch):
    from handpose_lib.model import build_model, tiny_config

    monkeypatch.setattr(bm, "book_stages", bm.book_v4_stages)
    m = build_model(tiny_config())
    old = bm.book_recipe().to_dict() | {"epochs": 13, "loss": {}}  # the v1 recipe's run
    meta = {"model_config": m.config.to_dict(), "train_config": old, "step": 12181}
    ck.save_run_checkpoint(tmp_path / "run", 12181, m, meta)
    with pytest.raises(ConfigError, match=r"another recipe .* \(1 of 2\)"):
        bm.build_book_model(tmp_path / "out", (tmp_path / "run", tmp_path / "run2"), progress=False)
    assert not (tmp_path / "out").exists() and not (tmp_path / "run2").exists()


def test_build_book_model_refuses_a_stage_two_from_other_weights(tmp_path, monkeypatch):
    from handpose_lib.model import build_model, tiny_config

    m = build_model(tiny_config())
    monkeypatch.setattr(bm, "book_stages", bm.book_v4_stages)
    (one, c1), (two, c2) = bm.book_stages(tmp_path / "s1", tmp_path / "s2")
    _finished_run(one, c1, m)
    _finished_run(two, c2, m, init_from={"path": "elsewhere", "step": 1, "sha256": "0" * 64})
    monkeypatch.setattr(tr, "train", lambda *a, **k: pytest.fail("nothing may be retrained"))
    with pytest.raises(ConfigError, match="did not start from the final weights of stage 1"):
        bm.build_book_model(tmp_path / "out", (one, two), progress=False)
    assert not (tmp_path / "out").exists()


def test_build_book_model_packages_finished_stages_with_one_learning_curve(tmp_path, monkeypatch):
    from handpose_lib.model import build_model, tiny_config

    m = build_model(tiny_config(input_size=64, heatmap_size=32))
    monkeypatch.setattr(bm, "book_stages", bm.book_v4_stages)
    (one, c1), (two, c2) = bm.book_stages(tmp_path / "s1", tmp_path / "s2")
    first = _finished_run(one, c1, m)
    moved = {"path": "/elsewhere/runs/book-tiny-v2", "step": first.step, "sha256": first.weights_sha256}
    _finished_run(two, c2, m, init_from=moved)  # stage 1 has moved since: its weights count, not its path
    n1, n2 = first.step, c2.epochs * (c2.n_train // c2.batch_size)
    for run, rows in (
        (one, [{"epoch": 4, "step": n1, "time_s": 2.0, "val_epe2d_px": 9.0}]),
        (
            two,
            [
                {"epoch": 1, "step": 900, "time_s": 3.0, "val_epe2d_px": 8.0},
                {"epoch": 6, "step": n2, "time_s": 1.0, "val_epe2d_px": 7.0},
            ],
        ),
    ):
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setattr(bm, "test_set", lambda: (_Fake64(3), "fake-n3"))
    monkeypatch.setattr(tr, "train", lambda *a, **k: pytest.fail("a finished run must not be retrained"))
    report = bm.build_book_model(tmp_path / "out", (one, two), progress=False)
    assert "book model" in report
    c = ck.load_checkpoint(tmp_path / "out")
    budget = c.meta["provenance"]["budget"]
    assert c.meta["metrics"]["benchmark"] == "fake-n3" and c.step == n2
    assert budget["steps"] == n1 + n2 and budget["steps_per_stage"] == [n1, n2] and budget["epochs"] == 10
    assert budget["train_wall_time_s"] == 6.0
    assert c.meta["provenance"]["last_stage_started_from"]["sha256"] == first.weights_sha256
    curve = ck.read_metrics(tmp_path / "out")
    assert [(r["stage"], r["epoch"], r["step"]) for r in curve] == [
        (1, 4, n1),  # stage 1 stops at max_steps after 4 of its 16 planned epochs
        (2, 5, n1 + 900),
        (2, 10, n1 + n2),
    ]
    assert [r["val_epe2d_px"] for r in curve] == [9.0, 8.0, 7.0]
    assert (tmp_path / "out" / "benchmark.json").is_file()


@pytest.mark.skipif(not (bm.BOOK_MODEL_DIR / ck.SIDECAR_FILE).is_file(), reason="no committed book model")
def test_committed_book_model_is_what_its_sidecar_says(tmp_path, monkeypatch):
    """models/book-tiny: fp16 safetensors well under 50 MB, provenance, and weights that score
    what the sidecar records (on the test set's first 64 samples, within sampling noise)."""
    from safetensors import safe_open

    from handpose_lib import evaluate as ev

    d = bm.BOOK_MODEL_DIR
    weights = d / ck.MODEL_FILE
    assert weights.stat().st_size < 50e6
    with safe_open(str(weights), "pt") as f:
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
    assert dtypes <= {"F16", "I64"} and "F16" in dtypes
    model, info = bm.load_book_model(verbose=False)  # verifies the sha256 of the weights
    meta = info["meta"]
    assert info["source"] == "book" and not model.training
    prov = meta["provenance"]
    assert prov["command"].startswith("make model") and len(prov["commit"]) == 40
    steps = prov["budget"]["steps_per_stage"]
    assert prov["budget"]["steps"] == sum(steps) and meta["step"] == steps[-1]  # the last stage's
    bench = json.loads((d / "benchmark.json").read_text())
    m = meta["metrics"]
    assert m["benchmark"] == bench["dataset"] and m["epe2d_px"] == bench["overall"]["epe2d_px"]
    rows = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, prov["budget"]["epochs"] + 1))
    assert {r["stage"] for r in rows} == set(range(1, len(steps) + 1))
    base = prov.get("base_package")  # v5: stage 3 started from the committed v4 package
    if base is not None:
        assert base["sha256"] == ck.load_checkpoint(bm.REPO_ROOT / base["path"]).weights_sha256
        assert prov["last_stage_started_from"]["sha256"] == base["sha256"]

    monkeypatch.setenv("HANDPOSE_CACHE", str(tmp_path / "cache"))
    data, _ = test_set(n=64)
    rep = ev.evaluate(model, data, device="cpu", dataset="first 64")
    assert rep["overall"]["epe2d_px"] == pytest.approx(m["epe2d_px"], abs=1.5)
    assert rep["overall"]["auc3d_20_50"] == pytest.approx(m["auc3d_20_50"], abs=0.05)


def test_v4_recipe_is_v3s_loss_on_engine_v2_with_real_photo_validation():
    v3, v4 = bm.book_recipe(), bm.book_v4_recipe()
    assert v4.loss == v3.loss and v4.batch_size == v3.batch_size and v4.init_from is None
    assert v4.engine == {"hand_model": "mesh", "left_hand_prob": 0.5} and v4.camera and v4.val_real
    assert bm._total_steps(v4) == 6_000  # the budget is fixed in steps: stage 1 stops at 6,000
    assert v4.epochs * (v4.n_train // v4.batch_size) == 24_000  # ... of a schedule for 24,000
    [(run1, cfg1), (run2, cfg2)] = bm.book_v4_stages()
    assert run1 == bm.BOOK_V4_DIR and cfg1 == v4 and run2 == bm.BOOK_V4_STAGE2_DIR
    assert cfg2.init_from == str(bm.BOOK_V4_DIR.resolve()) and cfg2.max_steps is None
    assert bm._total_steps(cfg1) + bm._total_steps(cfg2) == 15_000  # v3: 15,929
    assert (cfg2.lr, cfg2.seed, cfg2.engine, cfg2.camera) == (1e-3, 1, v4.engine, True)


def test_v4_committed_stage1_matches_the_recipe_and_is_complete():
    """The committed stage-1 run (models/book-tiny-v4-run) is a run of book_v4_recipe() that
    reached its max_steps: copied to runs/, train_stages goes on with stage 2, never resumes it."""
    last = ck.load_checkpoint(bm.REPO_ROOT / "models" / "book-tiny-v4-run")
    assert same_recipe(last.meta["train_config"], bm.book_v4_recipe().to_dict())
    assert last.step == bm._total_steps(bm.book_v4_recipe())


def test_v5_stage3_starts_from_the_v4_package_on_the_rich_scene():
    from handpose_lib.data.cached import TEST_SEED

    v4, (run, v5) = bm.book_v4_recipe(), bm.book_v5_stages()[0]
    assert run == bm.BOOK_V5_STAGE3_DIR and v5.init_from == str(bm.BOOK_V4_PACKAGE_DIR.resolve())
    assert v5.engine == {**v4.engine, "extras": "rich"} and v5.camera and v5.val_real
    assert v5.loss == v4.loss and v5.batch_size == v4.batch_size and v5.n_train == v4.n_train
    # fresh samples: neither v4's training (0) and validation (1) seeds nor the test seed
    assert v5.data_seed not in (0, 1, TEST_SEED) and v5.data_seed + 1 not in (0, 1, TEST_SEED)
    assert bm._total_steps(v5) == 12_000 and v5.lr == 5e-4 and v5.amp == "measure"
    base = bm.base_package(bm.book_v5_stages())  # the committed v4 package, with its two stages
    assert base is not None and base.meta["provenance"]["budget"]["steps_per_stage"] == [6000, 9000]
    assert bm.base_package(bm.book_v4_stages()) is None  # v4 starts from scratch


def test_base_package_is_read_once_while_its_files_stay_the_same(tmp_path):
    """Packaging asks for the base package three times: one read, until its files change."""
    import shutil

    folder = tmp_path / "v4"
    shutil.copytree(bm.BOOK_V4_PACKAGE_DIR, folder)
    stages = [(tmp_path / "stage", dataclasses.replace(bm.book_v5_stage3_recipe(), init_from=str(folder)))]
    first = bm.base_package(stages)
    assert first is not None and bm.base_package(stages) is first
    side = folder / ck.SIDECAR_FILE
    side.write_text(side.read_text() + "\n")  # the package was rewritten: read it again
    again = bm.base_package(stages)
    assert again is not first and again.weights_sha256 == first.weights_sha256


def _package(dir, m, steps_per_stage, rows):
    """A stand-in for a packaged book model (build_book_model's output) with its curve."""
    budget = {
        "steps": sum(steps_per_stage),
        "steps_per_stage": steps_per_stage,
        "epochs": max(r["epoch"] for r in rows),
        "samples_seen": 32 * sum(steps_per_stage),
        "unique_procedural_samples": 100,
    }
    meta = {"model_config": m.config.to_dict(), "step": steps_per_stage[-1]}
    meta["provenance"] = {"command": "make model", "budget": budget, "stages": ["runs/a", "runs/b"]}
    ck.save_checkpoint(dir, m, meta, save_rng=False, weights_dtype=torch.float16)
    ck.write_metrics(dir, rows)
    return ck.load_checkpoint(dir)


def test_build_book_model_continues_a_base_package_and_checks_its_weights(tmp_path, monkeypatch):
    import dataclasses

    from handpose_lib.model import build_model, tiny_config

    m = build_model(tiny_config(input_size=64, heatmap_size=32))
    rows = [
        {"stage": 1, "epoch": 1, "step": 10, "time_s": 1.0},
        {"stage": 2, "epoch": 2, "step": 30, "time_s": 2.0},
    ]
    base = _package(tmp_path / "v4", m, [10, 20], rows)
    cfg = dataclasses.replace(bm.book_v5_stage3_recipe(tmp_path / "v4"), epochs=1, n_train=64, batch_size=32)
    run = tmp_path / "s3"
    monkeypatch.setattr(bm, "book_stages", lambda *dirs: [(run, cfg)])
    monkeypatch.setattr(bm, "test_set", lambda: (_Fake64(3), "fake-n3"))
    monkeypatch.setattr(tr, "train", lambda *a, **k: pytest.fail("a finished run must not be retrained"))
    _finished_run(run, cfg, m, init_from={"path": "elsewhere", "step": 1, "sha256": "0" * 64})
    with pytest.raises(ConfigError, match=r"\(stage 3\) did not start from the final weights of the package"):
        bm.build_book_model(tmp_path / "out", (None,), progress=False)  # counted on from the package's 2
    started = {"path": str(tmp_path / "models" / "v4"), "step": 20, "sha256": base.weights_sha256}
    _finished_run(run, cfg, m, init_from=started)
    ck.write_metrics(run, [{"epoch": 1, "step": 2, "time_s": 4.0, "val_epe2d_px": 5.0}])
    bm.build_book_model(tmp_path / "out", (None,), progress=False)
    c = ck.load_checkpoint(tmp_path / "out")
    prov = c.meta["provenance"]
    assert prov["budget"]["steps_per_stage"] == [10, 20, 2] and prov["budget"]["steps"] == 32
    assert prov["budget"]["epochs"] == 3 and prov["budget"]["train_wall_time_s"] == 7.0
    assert prov["budget"]["unique_procedural_samples"] == 164 and len(prov["stages"]) == 3
    assert (
        prov["base_package"]["sha256"] == base.weights_sha256
        and prov["last_stage_started_from"]["path"] == "models/v4"
    )
    curve = ck.read_metrics(tmp_path / "out")
    assert [(r["stage"], r["epoch"], r["step"]) for r in curve] == [(1, 1, 10), (2, 2, 30), (3, 3, 32)]


def test_precision_says_how_the_last_stage_computed():
    from types import SimpleNamespace

    c = lambda meta: SimpleNamespace(meta=meta)  # noqa: E731
    assert bm._precision(c({"train_config": {"amp": "measure"}, "amp_measured": {"choice": "bf16"}})) == (
        "with bf16 autocast"
    )
    assert bm._precision(c({"train_config": {"amp": "off"}})) == "in float32"
    assert bm._precision(c({"train_config": {"amp": "auto"}})) == "with amp=auto (float32 on a CPU)"
