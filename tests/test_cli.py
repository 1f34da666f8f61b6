"""The `handpose` command line on tiny inputs: every command, its --help, and its error paths."""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from handpose_lib import checkpoint as ck
from handpose_lib import cli
from handpose_lib.model import build_model, tiny_config

ASSETS = Path(__file__).resolve().parents[1] / "handpose_lib" / "assets" / "real_hands"


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("HANDPOSE_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A weights-only checkpoint of an untrained tiny ResUnet (the CLI does not care)."""
    torch.manual_seed(0)
    m = build_model(tiny_config())
    d = tmp_path_factory.mktemp("ckpt") / "m"
    ck.save_checkpoint(d, m, {"model_config": m.config.to_dict(), "step": 0}, save_rng=False)
    return d


def run(argv, capsys):
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as e:  # argparse: --help (0) and usage errors (2)
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize(
    "cmd", ["train", "eval", "predict", "export", "render", "data", "occlusion", "book-model"]
)
def test_every_command_has_help_with_an_example(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([cmd, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "example" in out
    assert f"handpose {cmd} " in out or (cmd == "book-model" and "make model" in out)
    assert "--config" not in out and "preset" not in out  # one word: recipe (--config is a hidden alias)


def test_main_help_lists_every_subcommand(capsys):
    parser = cli.build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(sub.choices) == len(cli.SUBCOMMANDS) == 8
    code, out, _ = run(["--help"], capsys)
    assert code == 0
    listed = {line.split()[0] for line in out.splitlines() if line.startswith("    ") and line.split()}
    assert set(sub.choices) <= listed, set(sub.choices) - listed


def test_main_help_and_data_help(capsys):
    code, out, _ = run([], capsys)
    assert code == cli.EXIT_USAGE and "train" in out and "predict" in out
    code, out, _ = run(["data", "--help"], capsys)
    assert code == 0 and "handpose data check stb" in out
    code, _, err = run(["data", "list"], capsys)
    assert code == cli.EXIT_USAGE and "data check" in err


def test_data_check_passthrough_reports_a_missing_folder(tmp_path, capsys):
    code, out, _ = run(["data", "check", "stb", tmp_path / "nope"], capsys)
    assert code == 1 and "STB" in out


def test_train_then_resume_then_eval(tmp_path, capsys):
    out_dir = tmp_path / "run"
    conf = tmp_path / "small.yaml"  # a YAML recipe on top of the tiny recipe: small and quick
    conf.write_text("base: tiny\naugment: false\nthreads: 1\nn_val: 8\nnum_workers: 0\n")
    args = [
        "train",
        "--recipe",
        conf,
        "--data",
        "synthetic",
        "--out",
        out_dir,
        "--epochs",
        "2",
        "--n-train",
        "16",
        "--batch-size",
        "8",
        "--no-progress",
    ]
    code, out, err = run([*args, "--max-steps", "1"], capsys)
    assert code == 0, err
    assert "stopped at step 1" in out and "--n-train 16 --batch-size 8 --no-progress --resume" in out
    code, _, err = run(args, capsys)  # without --resume: refuses to overwrite
    assert code == cli.EXIT_USAGE and "--resume" in err
    code, out, err = run([*args, "--resume"], capsys)
    assert code == 0, err
    assert "done: 4 steps" in out
    sidecar = ck.load_checkpoint(out_dir).meta
    from handpose_lib.data.synthetic import GENERATOR_VERSION

    assert sidecar["generator_version"] == GENERATOR_VERSION
    assert sidecar["provenance"]["command"].startswith("handpose train") and sidecar["step"] == 4
    rows = [json.loads(x) for x in (out_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and "val_auc3d_20_50" in rows[-1]
    # the real ResUnet and data pipeline resume bit for bit: 1 step + resume == 4 steps straight
    straight = [str(x) if x != out_dir else str(tmp_path / "straight") for x in args]
    code, _, err = run(straight, capsys)
    assert code == 0, err
    a, b = ck.load_checkpoint(out_dir).weights, ck.load_checkpoint(tmp_path / "straight").weights
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    more = [*args, "--resume"]
    more[more.index("--epochs") + 1] = "3"  # another schedule: not a resume; says what to do
    code, _, err = run(more, capsys)
    assert code == cli.EXIT_USAGE and "epochs: 2 there, 3 now" in err and "--init-from" in err

    rep = tmp_path / "r.json"
    code, out, err = run(
        ["eval", "--checkpoint", out_dir, "--n", "8", "--json", rep, "--figures", tmp_path / "f"], capsys
    )
    assert code == 0, err
    assert "3D AUC(20-50 mm)" in out and "hidden" in out
    r = json.loads(rep.read_text())
    assert r["n_samples"] == 8 and r["dataset"].startswith("synthetic-v") and r["checkpoint"]["step"] == 4
    assert (tmp_path / "f" / "pck3d.html").is_file()


def test_train_errors(tmp_path, capsys):
    code, _, err = run(["train", "--recipe", "huge", "--out", tmp_path / "a"], capsys)
    assert code == cli.EXIT_USAGE and "neither a recipe name" in err
    code, _, err = run(["train", "--config", "huge", "--out", tmp_path / "a"], capsys)  # the old name
    assert code == cli.EXIT_USAGE and "neither a recipe name" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 3\nlearnin_rate: 1\n")
    code, _, err = run(["train", "--recipe", bad, "--out", tmp_path / "a"], capsys)
    assert code == cli.EXIT_USAGE and "learnin_rate" in err
    code, _, err = run(["train", "--out", tmp_path / "a", "--resume"], capsys)
    assert code == cli.EXIT_USAGE and "no checkpoint to resume" in err
    code, _, err = run(["train", "--data", "stb", "--out", tmp_path / "a"], capsys)
    assert code == cli.EXIT_USAGE and "data_root" in err
    code, _, err = run(["train", "--data", "imagenet", "--out", tmp_path / "a"], capsys)
    assert code == cli.EXIT_USAGE and "unknown data set" in err
    code, _, err = run(["train", "--init-from", tmp_path / "nowhere", "--out", tmp_path / "a"], capsys)
    assert code == cli.EXIT_USAGE and "nowhere" in err and "does not exist" in err


def test_train_stops_on_a_nan_loss_with_its_own_exit_code(tmp_path, capsys):
    args = ["train", "--recipe", "tiny", "--data", "synthetic", "--n-train", "16", "--n-val", "8"]
    args += ["--batch-size", "8", "--epochs", "2", "--workers", "0", "--no-progress", "--lr", "1e30"]
    code, _, err = run([*args, "--out", tmp_path / "nan"], capsys)  # AdamW steps of 1e30: overflow
    assert code == cli.EXIT_NAN, err
    assert "at step 2 (epoch 1)" in err and "lower learning rate" in err and "Traceback" not in err
    assert not (tmp_path / "nan" / ck.LAST_FILE).exists()  # nothing broken was saved


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_train_on_a_missing_gpu_is_a_clear_error(tmp_path, capsys):
    code, _, err = run(["train", "--device", "cuda", "--out", tmp_path / "a"], capsys)
    assert code == cli.EXIT_USAGE and "sees no CUDA GPU" in err and "auto or cpu" in err
    assert not (tmp_path / "a").exists()


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_and_prints_the_resume_command(tmp_path):
    """Ctrl-C in a terminal reaches the whole process group (the DataLoader worker too)."""
    out = tmp_path / "run"
    args = [sys.executable, "-m", "handpose_lib.cli", "train", "--recipe", "tiny", "--data", "synthetic"]
    args += ["--n-train", "16", "--n-val", "8", "--batch-size", "8", "--epochs", "50", "--workers", "1"]
    args += ["--no-progress", "--out", str(out)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                         start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (out / "config.json").is_file():  # written just before the first step
            assert p.poll() is None and time.monotonic() < deadline, p.communicate()
            time.sleep(0.1)
        time.sleep(2.0)
        os.killpg(p.pid, signal.SIGINT)
        stdout, stderr = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert p.returncode == cli.EXIT_STOPPED, stderr
    assert "(SIGINT)" in stdout and "resume with: handpose train" in stdout
    assert "Traceback" not in stderr and "exited unexpectedly" not in stderr
    assert "render synthetic" not in stderr  # --no-progress: no bars, the data's neither
    step = ck.load_checkpoint(out).step
    assert 0 < step < 100
    again = [*args, "--resume", "--max-steps", str(step + 2)]
    resumed = subprocess.run(again, capture_output=True, text=True, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert ck.load_checkpoint(out).step == step + 2


def test_predict_on_real_photos(model_dir, tmp_path, capsys):
    photos = sorted((ASSETS / "freihand").glob("*.jpg"))[:2]
    code, out, err = run(
        ["predict", "--no-detector", "--checkpoint", model_dir, *photos, "--out", tmp_path / "p"], capsys
    )
    assert code == 0, err
    pred = json.loads((tmp_path / "p" / "predictions.json").read_text())
    assert len(pred["predictions"]) == 2
    p0 = pred["predictions"][0]
    assert np.asarray(p0["joints2d_px"]).shape == (21, 2) and np.asarray(p0["joints3d_mm"]).shape == (21, 3)
    # centre crop of a 224x224 photo: the predictions lie inside the photo
    assert p0["crop"]["side"] == 224 and np.all(np.asarray(p0["joints2d_px"]) >= 0)
    import cv2

    img = cv2.imread(p0["overlay"])
    assert img is not None and img.shape[0] >= 224
    code, _, err = run(
        [
            "predict",
            "--no-detector",
            "--checkpoint",
            model_dir,
            photos[0],
            "--box",
            40,
            40,
            160,
            180,
            "--out",
            tmp_path / "q",
        ],
        capsys,
    )
    assert code == 0, err
    crop = json.loads((tmp_path / "q" / "predictions.json").read_text())["predictions"][0]["crop"]
    assert crop["side"] == pytest.approx(140 * 1.4)


def test_eval_on_the_real_photos_reports_2d_only(model_dir, tmp_path, capsys):
    code, out, err = run(
        ["eval", "--checkpoint", model_dir, "--data", "real-hands", "--json", tmp_path / "r.json"], capsys
    )
    assert code == 0, err
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["n_samples"] == 16 and r["overall"]["epe2d_px"] > 0
    assert r["overall"]["epe3d_mm"] is None and r["overall"]["n_joints_3d"] == 0


def test_predict_errors(model_dir, tmp_path, capsys):
    broken = tmp_path / "broken.png"
    broken.write_text("not an image")
    code, _, err = run(
        ["predict", "--no-detector", "--checkpoint", model_dir, broken, "--out", tmp_path / "p"], capsys
    )
    assert code == 1 and "cannot read" in err and "broken.png" in err  # reported, skipped
    code, _, err = run(
        [
            "predict",
            "--no-detector",
            "--checkpoint",
            model_dir,
            tmp_path / "missing.jpg",
            "--out",
            tmp_path / "p2",
        ],
        capsys,
    )
    assert code == 1 and "missing.jpg" in err
    photo = sorted((ASSETS / "freihand").glob("*.jpg"))[0]
    code, _, err = run(
        [
            "predict",
            "--no-detector",
            "--checkpoint",
            model_dir,
            photo,
            "--box",
            50,
            50,
            10,
            10,
            "--out",
            tmp_path / "p3",
        ],
        capsys,
    )
    assert code == cli.EXIT_USAGE and "--box" in err
    code, _, err = run(
        ["predict", "--checkpoint", tmp_path / "nope", photo, "--out", tmp_path / "p4"], capsys
    )
    assert code == cli.EXIT_USAGE and "checkpoint not found" in err


def test_eval_and_export_errors(model_dir, tmp_path, capsys):
    code, _, err = run(["eval", "--checkpoint", tmp_path / "nope"], capsys)
    assert code == cli.EXIT_USAGE and "checkpoint not found" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run(["export", "--checkpoint", empty, "--onnx", tmp_path / "m.onnx"], capsys)
    assert code == cli.EXIT_USAGE and "no checkpoint in" in err
    code, _, err = run(["eval", "--checkpoint", model_dir, "--data", "stb"], capsys)
    assert code == cli.EXIT_USAGE and "--data-root" in err
    # a checkpoint whose weights do not fit its config
    other = tmp_path / "other"
    shutil.copytree(model_dir, other)
    meta = json.loads((other / "checkpoint.json").read_text())
    meta["model_config"]["decoder_widths"] = [32, 32, 16, 16]
    (other / "checkpoint.json").write_text(json.dumps(meta))
    code, _, err = run(["eval", "--checkpoint", other], capsys)
    assert code == cli.EXIT_USAGE and "do not fit" in err


@pytest.mark.slow
def test_export_onnx_matches_pytorch(model_dir, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    code, out, err = run(["export", "--checkpoint", model_dir, "--onnx", tmp_path / "m.onnx"], capsys)
    assert code == 0, err
    assert (tmp_path / "m.onnx").stat().st_size > 100_000 and "onnxruntime vs PyTorch" in out


def test_render_passthrough(tmp_path, capsys):
    code, out, err = run(["render", "--out", tmp_path / "r", "--n", "2", "--quiet"], capsys)
    assert code == 0, err
    assert "wrote 2 samples" in out
    with pytest.raises(SystemExit) as e:
        cli.main(["render", "--help"])
    assert e.value.code == 0 and "handpose render" in capsys.readouterr().out


def test_occlusion_subcommand_help(capsys):
    from handpose_lib import cli

    with pytest.raises(SystemExit) as e:
        cli.main(["occlusion", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--ablate" in out and "--profile" in out


def test_occlusion_showcase_runs_the_tool_and_needs_the_trained_variants(capsys):
    from handpose_lib import occlusion

    if (occlusion.variant_paths("full")[0] / "a_full").exists():
        pytest.skip("runs/occlusion-full exists here")
    code, _, err = run(["occlusion", "--showcase", "--profile", "full"], capsys)
    assert code == cli.EXIT_USAGE and "--ablate a_full,b_no_occ_aug --profile full" in err


def test_occlusion_old_name_still_works_and_rejects_unknown_variant(capsys):
    with pytest.raises(SystemExit):
        cli.main(["occlusion-benchmark", "--ablate", "z_nope"])
    assert "unknown variants ['z_nope']" in capsys.readouterr().err


def test_render_errors(tmp_path, capsys):
    code, _, err = run(["render", "--out", tmp_path / "r", "--n", "2", "--size", "100"], capsys)
    assert code == cli.EXIT_USAGE and "multiple of 8" in err
    code, _, err = run(["render", "--out", tmp_path / "r", "--n", "2", "--occlusion", "lots"], capsys)
    assert code == cli.EXIT_USAGE and "heavy" in err
    assert not (tmp_path / "r").exists()


def test_render_into_a_folder_with_files_is_refused(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "000000.png").write_bytes(b"mine")
    code, _, err = run(["render", "--out", tmp_path, "--n", "1", "--quiet"], capsys)
    assert code == cli.EXIT_USAGE and "not empty" in err and "--overwrite" in err and "Traceback" not in err
    assert (tmp_path / "images" / "000000.png").read_bytes() == b"mine"


def test_predict_never_overwrites_and_gives_each_image_its_overlay(model_dir, tmp_path, capsys):
    photos = sorted((ASSETS / "freihand").glob("*.jpg"))[:2]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shutil.copy(photos[0], tmp_path / "a" / "x.jpg")
    shutil.copy(photos[1], tmp_path / "b" / "x.jpg")
    import cv2

    cv2.imwrite(str(tmp_path / "a" / "x.png"), cv2.imread(str(photos[0])))
    images = [tmp_path / "a" / "x.jpg", tmp_path / "b" / "x.jpg", tmp_path / "a" / "x.png"]
    out = tmp_path / "out"
    code, _, err = run(["predict", "--no-detector", "--checkpoint", model_dir, *images, "--out", out], capsys)
    assert code == 0, err
    pred = json.loads((out / "predictions.json").read_text())["predictions"]
    overlays = [p["overlay"] for p in pred]
    assert len(set(overlays)) == 3 and all(Path(o).is_file() for o in overlays)
    assert [Path(o).name for o in overlays] == ["x_pred.png", "x-2_pred.png", "x-3_pred.png"]
    before = (out / "x_pred.png").read_bytes()
    code, _, err = run(
        ["predict", "--no-detector", "--checkpoint", model_dir, images[1], "--out", out], capsys
    )
    assert code == cli.EXIT_USAGE and "already holds x_pred.png" in err and "--overwrite" in err
    assert (out / "x_pred.png").read_bytes() == before
    code, _, err = run(
        ["predict", "--no-detector", "--checkpoint", model_dir, images[1], "--out", out, "--overwrite"],
        capsys,
    )
    assert code == 0 and (out / "x_pred.png").read_bytes() != before


def test_predict_reports_and_skips_bad_images_and_exits_1(model_dir, tmp_path, capsys):
    photo = sorted((ASSETS / "freihand").glob("*.jpg"))[0]
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(photo.read_bytes()[: photo.stat().st_size // 3])  # opencv decodes it, grey below
    broken = tmp_path / "broken.png"
    broken.write_text("not an image")
    out = tmp_path / "out"
    (out / "blocked_pred.png").mkdir(parents=True)  # the overlay cannot be written there
    shutil.copy(photo, tmp_path / "blocked.jpg")
    images = [broken, photo, cut, tmp_path / "blocked.jpg"]
    code, stdout, err = run(
        ["predict", "--no-detector", "--checkpoint", model_dir, *images, "--out", out, "--overwrite"], capsys
    )
    assert code == 1 and "Traceback" not in err
    info = json.loads((out / "predictions.json").read_text())
    assert [p["image"] for p in info["predictions"]] == [str(photo)]
    failed = {Path(f["image"]).name: f["error"] for f in info["failed"]}
    assert set(failed) == {"broken.png", "cut.jpg", "blocked.jpg"}
    assert "truncated" in failed["cut.jpg"] and "cannot write" in failed["blocked.jpg"]
    assert "blocked_pred.png" not in stdout  # no path printed for an overlay that was not written
    assert "3 of 4 images failed" in err


@pytest.mark.parametrize(
    "args,match",
    [
        (["--box", 1000, 1000, 1100, 1100], "wholly outside"),
        (["--box", -300, -300, -100, -100], "wholly outside"),
        (["--box", 0, 0, "inf", 100], "finite"),
        (["--box", 40, 40, 160, 180, "--margin", -0.6], "margin"),
        (["--box", 40, 40, 160, 180, "--margin", -0.5], "margin"),
        (["--ref-bone-mm", 0], "--ref-bone-mm"),
    ],
)
def test_predict_refuses_boxes_and_margins_that_crop_nothing(model_dir, tmp_path, capsys, args, match):
    photo = sorted((ASSETS / "freihand").glob("*.jpg"))[0]
    code, _, err = run(
        ["predict", "--no-detector", "--checkpoint", model_dir, photo, "--out", tmp_path / "o", *args], capsys
    )
    assert code == cli.EXIT_USAGE and match in err and "Traceback" not in err


def test_user_errors_are_one_line_not_a_traceback(model_dir, tmp_path, capsys):
    photo = sorted((ASSETS / "freihand").glob("*.jpg"))[0]
    a_file = tmp_path / "file.txt"
    a_file.write_text("mine")
    cases = [
        (["predict", "--no-detector", "--checkpoint", model_dir, photo, "--out", a_file], "is a file"),
        (["train", "--out", a_file, "--epochs", "1"], "is a file"),
        (["train", "--out", tmp_path / "r", "--lr", "-1"], "lr must be a learning rate >= 0"),
        (["eval", "--checkpoint", model_dir, "--n", "-1"], "integer >= 1"),
        (["eval", "--checkpoint", model_dir, "--n", "0"], "integer >= 1"),
        (["eval", "--checkpoint", model_dir, "--batch-size", "0"], "integer >= 1"),
        (["eval", "--checkpoint", model_dir, "--data", "nosuchset"], "unknown data set 'nosuchset'"),
        (
            ["eval", "--checkpoint", model_dir, "--data", "real-hands", "--json", tmp_path],
            "expected a file path",
        ),
        (
            ["eval", "--checkpoint", model_dir, "--data", "real-hands", "--json", a_file / "r.json"],
            "cannot use",
        ),
        (["export", "--checkpoint", model_dir, "--onnx", a_file / "m.onnx", "--no-check"], "cannot use"),
    ]
    if not torch.cuda.is_available():
        cases.append(
            (
                [
                    "predict",
                    "--no-detector",
                    "--checkpoint",
                    model_dir,
                    photo,
                    "--out",
                    tmp_path / "c",
                    "--device",
                    "cuda",
                ],
                "CUDA",
            )
        )
    y = tmp_path / "bad.yaml"
    y.write_text("epochs: ten\n")
    cases.append((["train", "--config", y, "--out", tmp_path / "y"], "epochs must be an integer"))
    for argv, match in cases:
        code, _, err = run(argv, capsys)
        assert code == cli.EXIT_USAGE and match in err and "Traceback" not in err, (argv, err)
    assert a_file.read_text() == "mine"
    with pytest.raises(cli.CLIError):  # --debug shows the traceback
        cli.main(
            [
                "--debug",
                "predict",
                "--no-detector",
                "--checkpoint",
                str(model_dir),
                str(photo),
                "--out",
                str(a_file),
            ]
        )


def test_eval_on_a_refused_pickle_is_a_message(model_dir, tmp_path, capsys):
    import pickle

    from handpose_lib.data.examples import write_rhd

    write_rhd(tmp_path, split="evaluation")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "evaluation" / "anno_evaluation.pickle").write_bytes(pickle.dumps({0: Evil()}))
    code, out, err = run(
        ["eval", "--checkpoint", model_dir, "--data", "rhd", "--data-root", tmp_path], capsys
    )
    assert (
        code == cli.EXIT_USAGE and "refusing to load builtins.print" in err and "handpose data check" in err
    )
    assert "pwned" not in out and "Traceback" not in err


def test_handpose_debug_environment_variable_shows_the_traceback(model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HANDPOSE_DEBUG", "1")
    with pytest.raises(ck.CheckpointError):
        cli.main(["eval", "--checkpoint", str(tmp_path / "nope")])


def test_train_failures_are_one_line_and_leave_no_run_folder(tmp_path, capsys):
    import pickle

    from handpose_lib.data.examples import write_rhd

    root = tmp_path / "rhd"
    write_rhd(root, split="training")
    write_rhd(root, split="evaluation")
    out = tmp_path / "runs" / "x"
    # 3 training samples, a batch of 64: fit fails after creating the run folder
    argv = [
        "train",
        "--data",
        "rhd",
        "--data-root",
        root,
        "--batch-size",
        "64",
        "--out",
        out,
        "--no-progress",
    ]
    code, _, err = run(argv, capsys)
    assert code == cli.EXIT_USAGE and "fewer than one batch" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (root / "training" / "anno_training.pickle").write_bytes(pickle.dumps({0: Evil()}))
    code, stdout, err = run(argv, capsys)
    assert code == cli.EXIT_USAGE and "refusing to load builtins.print" in err and "Traceback" not in err
    assert "pwned" not in stdout and not (tmp_path / "runs").exists()


def test_export_and_eval_never_replace_an_existing_file(model_dir, tmp_path, capsys):
    onnx = tmp_path / "m.onnx"
    onnx.write_text("my model")
    code, _, err = run(["export", "--checkpoint", model_dir, "--onnx", onnx, "--no-check"], capsys)
    assert code == cli.EXIT_USAGE and "already exists" in err and "--overwrite" in err
    assert onnx.read_text() == "my model"
    code, _, err = run(
        ["export", "--checkpoint", model_dir, "--onnx", onnx, "--no-check", "--overwrite"], capsys
    )
    assert code == 0 and onnx.stat().st_size > 1000
    rep = tmp_path / "r.json"
    rep.write_text("{}")
    (tmp_path / "figs").mkdir()
    (tmp_path / "figs" / "pck3d.html").write_text("mine")
    for extra in (["--json", rep], ["--figures", tmp_path / "figs"]):
        code, _, err = run(["eval", "--checkpoint", model_dir, "--data", "real-hands", *extra], capsys)
        assert code == cli.EXIT_USAGE and "already exists" in err
    assert rep.read_text() == "{}" and (tmp_path / "figs" / "pck3d.html").read_text() == "mine"
