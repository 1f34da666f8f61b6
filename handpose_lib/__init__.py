"""handpose_lib: the library behind the handpose-book (import as ``hp``).

Layers (imports only go down; ``tests/test_layers.py`` checks it): 1 ``skeleton``; 2 ``data``,
``metrics``, ``checkpoint``, ``lhr``, ``losses``, ``model``, ``config``, ``device``; 3 ``train``,
``evaluate``, ``viz``, ``inference``, ``detect``, ``detector_train``; 4 ``book_model``,
``occlusion``, ``verify``, ``pipeline``; 5 ``cli``.

Submodules load on first use (``hp.model``, ``hp.train``, ...), so ``import handpose_lib``
and the ``handpose`` command start fast; ``import handpose_lib.model`` works as usual.
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = (
    "skeleton",
    "metrics",
    "data",
    "lhr",
    "losses",
    "model",
    "checkpoint",
    "config",
    "device",
    "train",
    "evaluate",
    "book_model",
    "occlusion",
    "viz",
    "inference",
    "detect",
    "detector_train",
    "verify",
    "pipeline",
    "cli",
)
__all__ = [*_SUBMODULES, "__version__"]


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'handpose_lib' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_SUBMODULES))
