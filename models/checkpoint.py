"""The envelope of the partitions' model checkpoints: a pickled dict with a format version."""

from __future__ import annotations

import pickle
from typing import Any

__all__ = ["unpickle_checkpoint"]


def unpickle_checkpoint(blob: bytes, current_format: int) -> tuple[dict[str, Any], bool]:
    """The checkpoint's dict and whether it is format 1 (the constructor arguments stored in
    ``args``, from before checkpoints carried learned state only). Raises on anything else."""
    data = pickle.loads(blob)  # noqa: S301 - our own changelog, written by a checkpoint() method
    if not isinstance(data, dict):
        msg = f"checkpoint is a {type(data).__name__}, not a dict"
        raise TypeError(msg)
    if data.get("format") == current_format:
        return data, False
    if "args" in data:
        return data, True
    msg = f"unknown checkpoint format {data.get('format')!r}"
    raise ValueError(msg)
