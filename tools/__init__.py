"""Tooling around the runtime, never imported by it: benchmark, simulator, demo, soak, replay, eval.

``streams/`` is the app's wiring; the ``coursepulse`` CLI (``streams.cli``) imports these lazily,
one subcommand at a time. Dependencies point one way: tools -> streams, models, schemas.
"""
