"""``coursepulse bench``: throughput, latency, kernels, offline evaluation and memory, in one run.

Every figure is measured in the run that reports it, against one broker (the embedded Tansu
unless ``KAFKA_BROKER`` names one); each live part gets its own topic prefix and app id.

(a) ``raw_consume``: N simulator events (``streams.producer.to_wire`` bytes) pre-produced to one
    topic, read back by a plain ``AIOKafkaConsumer`` (no group, every partition assigned, from the
    beginning); best and median of a few passes.
(b) ``faust_empty``: the project's Faust app with an agent that only counts
    (:mod:`tools.bench.empty_agent`), in its own process, on the same N events; first to last event,
    timed inside that process.
(c) ``pipeline_one_worker``: one ``coursepulse worker`` on the same N events pre-produced into
    fresh topics; from the first ``events_in`` seen on ``/stats`` to ``events_in`` reaching N.
(d) ``pipeline_two_workers``: the same with two worker processes (sum of their ``events_in``).
(e) ``latency``: a fresh worker fed simulator traffic at 25 %, 50 % and 75 % of (c); event ->
    recommendation (the recommendation's Kafka timestamp minus the send time of its triggering
    ``event_id``) and event -> alert (the alert's Kafka timestamp minus the send time of the event
    that moved its partition's watermark to the alert's ``generated_at``) percentiles.
(f) ``kernels``: each Numba kernel against its NumPy reference (and pure Python at one size) at
    the sizes the pipeline uses.
(g) ``eval``: ``PrequentialEvaluator`` events/s on a simulator file and on the OULAD conversion.
(h) ``memory``: RSS growth per 100k users of the worker's per-user structures (a fresh process),
    and the (c) worker's RSS.
(i) ``scale``: the one step's process CPU per event and eval's events/s with 10k, 100k and 1M
    users stored (short histories) and with long histories, each point in a fresh process
    (:mod:`tools.bench.scale`); ``eval_speed_ratio_long_history`` and
    ``worker_cpu_ratio_1m_to_10k_users``.
With ``py-spy`` available, a further single-worker run is sampled (``py-spy record --nonblocking``)
and summarised as inclusive/self time per function and per package.

Library code here logs and returns dicts; the CLI prints the table (:func:`table_rows`).

Modules, one job each: ``config`` (what to run, the machine), ``kernels`` (f), ``memory`` (h),
``scale`` (i), ``evaluation`` (g, and the simulator traffic), ``children`` (child processes and their figures),
``live`` (a)-(d) and the profile run, ``latency`` (e), ``profile`` (the py-spy summary), ``run``
(every part in order), ``report`` (table and plot), ``empty_agent`` (the worker of (b)).
"""

from __future__ import annotations

from tools.bench.config import CATALOGUE_SIZES, PAIR_SIZES, ROW_SIZES, BenchConfig, machine_info
from tools.bench.evaluation import bench_eval
from tools.bench.kernels import bench_kernels
from tools.bench.memory import bench_memory
from tools.bench.profile import EVENT_LOOP_C, summarise_profile
from tools.bench.report import table_rows, write_plot
from tools.bench.run import run_bench

__all__ = [
    "CATALOGUE_SIZES",
    "EVENT_LOOP_C",
    "PAIR_SIZES",
    "ROW_SIZES",
    "BenchConfig",
    "bench_eval",
    "bench_kernels",
    "bench_memory",
    "machine_info",
    "run_bench",
    "summarise_profile",
    "table_rows",
    "write_plot",
]
