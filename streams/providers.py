"""What the worker's HTTP views read from the agents, registered by the agents themselves.

``streams`` never imports an agent (only the app's autodiscovery, ``streams.app.load_agents``):
an agent that owns data a view shows registers a function here, and the view looks it up by
name, answering 503 while nothing is registered.

>>> @provide("answer")
... def answer() -> int:
...     return 42
>>> lookup("answer")()
42
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["lookup", "provide"]

F = TypeVar("F", bound=Callable[..., Any])
_providers: dict[str, Callable[..., Any]] = {}


def provide(name: str) -> Callable[[F], F]:
    """Register the decorated function under ``name`` (the latest registration wins); returns it unchanged."""
    def register(fn: F) -> F:
        _providers[name] = fn
        return fn

    return register


def lookup(name: str) -> Callable[..., Any] | None:
    """The function registered under ``name``, or None when no agent provides it in this process."""
    return _providers.get(name)
