"""device.py: choosing the device (and saying what is missing) and the autocast dtype of a recipe."""

import pytest
import torch

from handpose_lib import device
from handpose_lib.config import ConfigError


def test_pick_device_names_what_is_missing():
    assert device.pick_device("cpu") == torch.device("cpu")
    assert device.pick_device(torch.device("cpu")) == torch.device("cpu")
    if not torch.cuda.is_available():
        assert device.pick_device("auto").type in ("cpu", "mps")
        with pytest.raises(device.DeviceUnavailableError, match="sees no CUDA GPU"):
            device.pick_device("cuda:0")
    else:
        assert device.pick_device("auto").type == "cuda"
        with pytest.raises(device.DeviceUnavailableError, match="only"):
            device.pick_device(f"cuda:{torch.cuda.device_count()}")
    with pytest.raises(device.DeviceUnavailableError, match="not a device name"):
        device.pick_device("gpu")


def test_autocast_dtype():
    with pytest.raises(ConfigError, match="fp16 needs CUDA"):
        device.autocast_dtype("fp16", torch.device("cpu"))
    assert device.autocast_dtype("auto", torch.device("cpu")) is None
