"""handpose_lib: the library behind the handpose-book (import as ``hp``).

Layers (imports only go down): ``skeleton`` -> ``metrics``, ``data``, ``model``, ``losses``
-> ``train``, ``evaluate``, ``viz`` -> ``cli``.
"""

__version__ = "0.1.0"

from . import lhr, losses, metrics, model, skeleton  # noqa: E402

__all__ = ["metrics", "skeleton", "lhr", "losses", "model", "__version__"]
