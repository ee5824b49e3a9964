"""Real datasets converted into CoursePulse's event-file exchange format.

``oulad``: the Open University Learning Analytics Dataset (Kuzilek, Hlosta, Zdrahal, Scientific
Data 4, 170171, 2017; CC-BY 4.0) as ``events.jsonl`` + ``labels.csv`` + ``ATTRIBUTION.md`` +
``summary.json``. Anything derived from it must keep that attribution.

Names are imported from their module on first use, so ``python -m models.datasets.oulad`` runs
without importing the module twice.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "CITATION",
    "DEFAULT_SRC",
    "LICENCE",
    "OULADConversion",
    "convert_oulad",
    "iter_oulad_events",
    "load_oulad",
    "presentation_start_ms",
]

_MODULE = {name: "models.datasets.oulad" for name in __all__}


def __getattr__(name: str) -> Any:
    module = _MODULE.get(name)
    if module is None:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
