"""config.py: the named recipes, YAML recipes, their validation and the learning-rate schedules."""

import pytest

from handpose_lib import config


def test_lr_schedules():
    f = lambda s, sched: config.lr_factor(s, 100, sched, 0.1, 0.01, (0.5, 0.8), 0.1)  # noqa: E731
    warm = [f(s, "onecycle") for s in range(10)]
    assert warm == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert f(10, "onecycle") == pytest.approx(1.0) and f(100, "onecycle") == pytest.approx(0.01)
    cos = [f(s, "cosine") for s in range(101)]
    assert cos[0] == pytest.approx(1.0) and all(a >= b for a, b in zip(cos, cos[1:]))
    assert [f(s, "step") for s in (0, 49, 50, 79, 80, 99)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    assert f(37, "constant") == 1.0


def test_configs(tmp_path):
    assert config.load_config("tiny").model == "tiny" and config.load_config("paper").model == "paper"
    assert config.load_config("paper", epochs=2).epochs == 2
    y = tmp_path / "c.yaml"
    y.write_text("base: paper\nepochs: 7\nloss: {bones: 2.0}\n")
    c = config.load_config(str(y))
    assert c.model == "paper" and c.epochs == 7 and c.loss == {"bones": 2.0}
    y.write_text("epochs: 7\nlearning_rate: 3\n")
    with pytest.raises(config.ConfigError, match="unknown keys.*learning_rate"):
        config.load_config(str(y))
    y.write_text("epochs: [7\n")
    with pytest.raises(config.ConfigError, match="not valid YAML"):
        config.load_config(str(y))
    with pytest.raises(config.ConfigError, match="neither a recipe name"):
        config.load_config("huge")
    with pytest.raises(config.ConfigError, match="schedule"):
        config.TrainConfig(schedule="linear")


@pytest.mark.parametrize(
    "text,match",
    [
        ('epochs: "10"', "epochs must be an integer, got '10'"),
        ("lr: fast", "lr must be a finite number, got 'fast'"),
        ("lr: -1", "lr must be a learning rate >= 0"),
        ("batch_size: 0.5", "batch_size must be an integer"),
        ("augment: maybe", "augment must be true or false"),
        ("scale_range: [1.2, 0.8]", "scale_range must be"),
        ("loss: 3", "loss must be a mapping"),
        ("num_workers: -2", "num_workers must be >= 0"),
    ],
)
def test_yaml_values_of_the_wrong_type_or_range_are_named(tmp_path, text, match):
    y = tmp_path / "c.yaml"
    y.write_text(text + "\n")
    with pytest.raises(config.ConfigError, match=match):
        config.load_config(str(y))


def test_engine_fields_reach_the_procedural_samples(tmp_path, monkeypatch):
    """TrainConfig.engine changes the SyntheticConfig of training and validation samples (and
    so the cache folder); an unknown or invalid field is named."""
    monkeypatch.setenv("HANDPOSE_CACHE", str(tmp_path))
    c = config.TrainConfig(n_train=4, n_val=2, engine={"hand_model": "mesh", "left_hand_prob": 0.5})
    sc = config.engine_config(c)
    assert sc.hand_model == "mesh" and sc.left_hand_prob == 0.5 and sc.crop_size == 128
    assert config.engine_config(config.TrainConfig()).hand_model == "capsule"  # the engine's default
    train, val = config.build_datasets(c, progress=False)
    assert len(train) == 4 and len(val) == 2
    assert train.meta["config"]["hand_model"] == "mesh" and val.meta["config"]["left_hand_prob"] == 0.5
    with pytest.raises(config.ConfigError, match="unknown engine fields.*hand_shape"):
        config.engine_config(config.TrainConfig(engine={"hand_shape": "mesh"}))
    with pytest.raises(config.ConfigError, match="hand_model 'lego'"):
        config.engine_config(config.TrainConfig(engine={"hand_model": "lego"}))
    with pytest.raises(config.ConfigError, match="engine must be a mapping"):
        config.TrainConfig(engine=["mesh"])
