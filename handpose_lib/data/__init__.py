"""Data: the common sample structure, the procedural engine and the real data set loaders."""

from .sample import (
    REQUIRED_KEYS,
    VIS_NAMES,
    VIS_OBJECT,
    VIS_OUTSIDE,
    VIS_SELF,
    VIS_UNKNOWN,
    VIS_VISIBLE,
    make_sample,
    project,
)

__all__ = [
    "REQUIRED_KEYS",
    "VIS_NAMES",
    "VIS_OBJECT",
    "VIS_OUTSIDE",
    "VIS_SELF",
    "VIS_UNKNOWN",
    "VIS_VISIBLE",
    "make_sample",
    "project",
]
