"""A restricted unpickler for annotation pickles (RHD's ``anno_*.pickle``).

``pickle.load`` can run arbitrary code named in the file. This unpickler resolves only the
globals needed to rebuild plain containers (dict, list, tuple, set, str, numbers: these need no
globals at all) and numpy arrays/scalars/dtypes; any other global raises
``pickle.UnpicklingError`` naming it. Python 2 pickles (RHD was written by Python 2) are read
with ``encoding="latin1"`` as numpy recommends.
"""

from __future__ import annotations

import importlib
import io
import pickle
from pathlib import Path

import numpy as np

# (module, name) pairs a pickle may name; numpy moved ``core`` to ``_core`` in 2.0
_NUMPY_CORE_NAMES = {
    ("multiarray", "_reconstruct"),
    ("multiarray", "scalar"),
    ("numeric", "_frombuffer"),
}
_ALLOWED = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("builtins", "dict"),
    ("builtins", "list"),
    ("builtins", "tuple"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "bytearray"),
    ("collections", "OrderedDict"),
    ("_codecs", "encode"),  # Python 2 byte strings pickled by Python 3
}


def _numpy_core_attr(sub: str, name: str):
    for mod in (f"numpy._core.{sub}", f"numpy.core.{sub}"):
        try:
            return getattr(importlib.import_module(mod), name)
        except (ImportError, AttributeError):
            continue
    raise pickle.UnpicklingError(f"numpy has no {sub}.{name}")


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that only constructs plain containers and numpy arrays."""

    def find_class(self, module: str, name: str):
        parts = module.split(".")
        if parts[0] == "numpy" and len(parts) == 3 and parts[1] in ("core", "_core"):
            if (parts[2], name) in _NUMPY_CORE_NAMES:
                return _numpy_core_attr(parts[2], name)
        if (module, name) in _ALLOWED:
            if module == "numpy":
                return getattr(np, name)
            return getattr(importlib.import_module(module), name)
        if module.startswith("numpy.dtypes") and name.endswith("DType"):  # numpy >= 1.25 dtype classes
            return getattr(importlib.import_module(module), name)
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name} from a pickle: only containers and numpy arrays are allowed"
        )


def safe_load(path_or_bytes) -> object:
    """Load a pickle file (path) or bytes with :class:`RestrictedUnpickler`."""
    data = path_or_bytes if isinstance(path_or_bytes, bytes | bytearray) else Path(path_or_bytes).read_bytes()
    return RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
