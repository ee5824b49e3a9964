"""``coursepulse demo``: broker, Redis, workers, simulated platform traffic and live results.

Everything runs on loopback: the embedded Tansu broker and Redis (unless configured), N worker
processes (``coursepulse worker``), the simulator producing at a fixed rate, and a tail consumer
of the output topics. The live view (rich) or the headless log shows events/s, profiles,
segments, the DLQ and - as their agents land - recommendations and alerts. On exit every child
process is stopped; ``--summary-json`` records how many messages each topic received.

Modules: ``run`` (start, produce, stop), ``tail`` (the output topics read back), ``view`` (the
live view).
"""

from __future__ import annotations

from tools.demo.run import run_demo

__all__ = ["run_demo"]
