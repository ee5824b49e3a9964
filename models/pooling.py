"""Churn learned across partitions: every partition's classifier, merged by parameter averaging.

A partition's churn model learns only from its own users: on a platform of 3,000 users and 12
partitions, from 250. Where churn is learned from the first weeks of a user (a MOOC), that
costs the model most of its lead over "days since the last event" (in ``coursepulse eval``,
ROC AUC 0.80 with one model for the whole platform, 0.76 with one per partition).

So every partition still learns its own classifier (deterministic, checkpointed, moved with
the partition), and every ``every`` labels it *publishes* its parameters (:func:`parameters`:
the standard scaler's counts, means and variances, the logistic weights and intercept, the
number of labels learned). Every worker keeps the last parameters of every partition
(:class:`SharedModel`, fed from the compacted ``churn-model`` topic) and scores with their merge
(:func:`merge`): a linear model whose logit is the label-weighted mean of the partitions'
logits (an ensemble of the partitions' models, exactly, expressed as one logistic model over
the pooled scaler: "one-shot parameter averaging" in raw feature units).
Measured with ``coursepulse eval`` (``docs/eval/README.md``, "After churn learned across
partitions"): alerts fewer and more precise on every data set (alert lift 2.3 -> 4.5 on OULAD,
1.4-1.5 -> 1.7-2.2 on the simulator's shapes); churn ROC AUC up where partitions learn little
(the MOOC profile 0.764 -> 0.796), down by 0.002-0.006 on the other simulator shapes and by
0.03 where partitions learn a lot (OULAD 0.788 -> 0.758).

A partition scores with the merged classifier once it has learned more labels than the
partition's own; the labels of every partition are its own ones too, so the prior's weight is
that of the merged count. The merge is not learned state of any partition: checkpoints stay
as they were (format 2), and a worker rebuilds it from the topic when it starts.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Mapping
from typing import Any

from models.churn import OnlineClassifier

__all__ = ["PARAMS_FORMAT", "SharedModel", "merge", "parameters"]

#: version of :func:`parameters`' format
PARAMS_FORMAT = 1
#: the classifier kinds whose parameters can be averaged (``OnlineClassifier.model``)
LINEAR = ("logreg", "binned")


def parameters(clf: OnlineClassifier) -> dict[str, Any]:
    """What a partition publishes of its classifier (JSON-ready)."""
    if clf.model not in LINEAR:
        msg = f"only linear classifiers can be averaged, got model={clf.model!r}"
        raise ValueError(msg)
    scaler = clf._scaler  # noqa: SLF001 - the same package's model
    return {
        "v": PARAMS_FORMAT,
        "model": clf.model,
        "n": int(clf.n_learned),
        "counts": {k: int(v) for k, v in scaler.counts.items()},
        "means": {k: float(v) for k, v in scaler.means.items()},
        "vars": {k: float(v) for k, v in scaler.vars.items()},
        "weights": {k: float(v) for k, v in clf._logreg._weights.to_dict().items()},  # noqa: SLF001
        "intercept": float(clf._logreg.intercept),  # noqa: SLF001
    }


def _check(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` as :func:`parameters` writes them, or ValueError saying what is wrong."""
    if not isinstance(params, Mapping):
        msg = f"model parameters must be an object, got {type(params).__name__}"
        raise ValueError(msg)
    if params.get("v") != PARAMS_FORMAT:
        msg = f"model parameters of format {params.get('v')!r}, expected {PARAMS_FORMAT}"
        raise ValueError(msg)
    n = params.get("n")
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        msg = f"model parameters need n, an int >= 0, got {n!r}"
        raise ValueError(msg)
    out: dict[str, Any] = {"v": PARAMS_FORMAT, "model": params.get("model"), "n": n}
    for name in ("counts", "means", "vars", "weights"):
        part = params.get(name)
        if not isinstance(part, Mapping):
            msg = f"model parameters need {name}, an object, got {type(part).__name__}"
            raise ValueError(msg)
        values = {}
        for k, v in part.items():
            if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
                msg = f"model parameter {name}[{k!r}] must be a finite number, got {v!r}"
                raise ValueError(msg)
            values[str(k)] = v
        out[name] = values
    intercept = params.get("intercept")
    if not isinstance(intercept, int | float) or isinstance(intercept, bool) or not math.isfinite(intercept):
        msg = f"model parameter intercept must be a finite number, got {intercept!r}"
        raise ValueError(msg)
    out["intercept"] = float(intercept)
    return out


def merge(template: OnlineClassifier, params: list[dict[str, Any]]) -> OnlineClassifier | None:
    """A classifier configured as ``template`` whose logit is the label-weighted mean of the
    logits of the classifiers ``params`` describe (None: nothing learned).

    Its scaler holds the pooled statistics (counts summed, pooled mean and population variance).
    Averaging the standardised weights alone would be wrong where the partitions' scalers differ
    (a weight is per standard deviation of *its* partition), so each partition's linear part is
    taken back to raw feature units (``a = w / sd``, ``c = b - sum(a * mean)``), averaged there,
    and expressed in the pooled scaler's units again. Bin indicators are not scaled: a bin's
    weight is averaged over the partitions that learned it (River holds no weight for a bin a
    partition never met). So the merged logit is the label-weighted mean of the partition logits
    for inputs whose bins every partition met, and no rare bin is shrunk by the partitions that
    never saw it.
    """
    live = [p for p in params if p["n"] > 0 and p["model"] == template.model]
    total = sum(p["n"] for p in live)
    if not total:
        return None
    merged = template.clone()
    counts: Counter[str] = Counter()
    means: defaultdict[str, float] = defaultdict(float)
    variances: defaultdict[str, float] = defaultdict(float)
    scaled = sorted(set().union(*(p["counts"] for p in live)))
    for k in scaled:
        n_k = sum(p["counts"].get(k, 0) for p in live)
        if not n_k:
            continue
        mean = sum(p["counts"].get(k, 0) * p["means"].get(k, 0.0) for p in live) / n_k
        var = sum(p["counts"].get(k, 0) * (p["vars"].get(k, 0.0) + (p["means"].get(k, 0.0) - mean) ** 2)
                  for p in live) / n_k
        counts[k], means[k], variances[k] = n_k, mean, var
    raw: defaultdict[str, float] = defaultdict(float)  # label-weighted raw-unit slopes
    seen: defaultdict[str, int] = defaultdict(int)  # labels of the partitions that learned a bin
    constant = 0.0
    for p in live:
        share = p["n"] / total
        c = p["intercept"]
        for k, w in p["weights"].items():
            if k in p["counts"] or k in counts:  # a standardised feature
                v = p["vars"].get(k, 0.0)
                a = w / math.sqrt(v) if v > 0 else 0.0  # River scales a constant feature to 0
                raw[k] += share * a
                c -= a * p["means"].get(k, 0.0)
            else:  # a bin indicator: averaged over the partitions that learned it (see below)
                raw[k] += p["n"] * w
                seen[k] += p["n"]
        constant += share * c
    for k, n_k in seen.items():
        # a partition that never met a bin holds no weight for it: its silence is no estimate
        # of 0, and counting it would shrink every rare bin's weight towards 0
        raw[k] /= n_k
    logreg = merged._logreg  # noqa: SLF001
    intercept = constant
    for k in sorted(raw):
        if k in counts:
            v = variances[k]
            logreg._weights[k] = raw[k] * math.sqrt(v) if v > 0 else 0.0  # noqa: SLF001
            intercept += raw[k] * means[k] if v > 0 else 0.0
        else:
            logreg._weights[k] = raw[k]  # noqa: SLF001
    scaler = merged._scaler  # noqa: SLF001
    scaler.counts, scaler.means, scaler.vars = counts, means, variances
    logreg.intercept = intercept
    merged.n_learned = total
    return merged


class SharedModel:
    """The last parameters every partition published, and their merge (see the module docstring).

    ``every``: a partition publishes once it has learned this many labels since it last did
    (:meth:`due`); 0 turns sharing off (every partition scores with its own classifier).
    """

    def __init__(self, every: int = 500) -> None:
        if not isinstance(every, int) or every < 0:
            msg = f"every must be an int >= 0, got {every!r}"
            raise ValueError(msg)
        self.every = every
        self._params: dict[int, dict[str, Any]] = {}
        self._shared_at: dict[int, int] = {}
        self._merged: OnlineClassifier | None = None
        self._dirty = False

    @property
    def partitions(self) -> list[int]:
        """The partitions whose parameters are held."""
        return sorted(self._params)

    @property
    def n_learned(self) -> int:
        """Labels learned by every partition, as last published."""
        return sum(p["n"] for p in self._params.values())

    def offer(self, partition: int, params: Mapping[str, Any]) -> bool:
        """Keep ``params`` as ``partition``'s unless it already holds parameters of more labels
        (a crash rolls a partition back to its checkpoint; it publishes again once past them).
        Returns whether they were kept; ValueError when they are not parameters of this format."""
        if not isinstance(partition, int) or isinstance(partition, bool) or partition < 0:
            msg = f"partition must be an int >= 0, got {partition!r}"
            raise ValueError(msg)
        return self._keep(partition, _check(params))

    def _keep(self, partition: int, params: dict[str, Any]) -> bool:
        held = self._params.get(partition)
        if held is not None and held["n"] > params["n"]:
            return False
        self._params[partition] = params
        self._dirty = True
        return True

    def due(self, partition: int, clf: OnlineClassifier) -> dict[str, Any] | None:
        """``clf``'s parameters when ``partition`` has learned ``every`` labels since it last
        published them (and keeps them here at once); else None."""
        if not self.every or clf.model not in LINEAR:
            return None
        if clf.n_learned < self._shared_at.get(partition, 0) + self.every:
            return None
        self._shared_at[partition] = clf.n_learned
        params = parameters(clf)
        self._keep(partition, params)  # made here, in the checked form: no need to check it
        return params

    def get(self, template: OnlineClassifier) -> OnlineClassifier | None:
        """The merged classifier (configured as ``template``), or None before any parameters."""
        if not self.every:
            return None
        if self._dirty:
            self._merged = merge(template, list(self._params.values()))
            self._dirty = False
        return self._merged
