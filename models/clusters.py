"""Online clusters of users by how they use the platform, each with a plain-language description.

Plain objects, no Kafka. The vector clustered is a few of the churn features (``CLUSTER_FEATURES``),
standardised online; River's sequential ``cluster.KMeans`` moves the centres. Its centres are
seeded by k-means++ (then a few Lloyd passes) over the first ``warmup`` vectors, so no centre is
left where a random draw put it, and the result is the same for the same seed and stream.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Mapping

from river import cluster, preprocessing

from models.churn import clone

__all__ = ["CLUSTER_FEATURES", "ActivityClusters"]

logger = logging.getLogger(__name__)

#: the churn features clustered on (names of :data:`models.churn.FEATURES`)
CLUSTER_FEATURES: tuple[str, ...] = (
    "sessions_per_week",
    "watch_per_session",
    "watch_long",
    "watch_trend",
    "completion_rate",
    "purchases_log",
    "shares_log",
)

#: (feature, word when well above the mean, word when well below), in description order
_WORDS: tuple[tuple[str, str | None, str | None], ...] = (
    ("sessions_per_week", "frequent", "occasional"),
    ("watch_per_session", "long sessions", "short sessions"),
    ("watch_long", "heavy watchers", "light watchers"),
    ("completion_rate", "finish courses", "rarely finish"),
    ("shares_log", "sharers", None),
    ("watch_trend", "activity rising", "activity falling"),
)
_NOTABLE = 0.5  # standard deviations from the overall mean
_MAX_WORDS = 3  # traits named per description, besides purchases


class ActivityClusters:
    """Online k-means over standardised activity features, with descriptions of each cluster.

    ``learn(x)`` and ``predict(x)`` take ``churn_features`` dicts (other keys are ignored).
    ``predict`` returns -1 until ``warmup`` vectors were learned. Learn each user about once per
    active day: learning on every event would weight the clusters towards the heaviest users.
    """

    def __init__(
        self, n_clusters: int = 4, halflife: float = 0.05, warmup: int = 50, seed: int = 42
    ) -> None:
        if not (isinstance(n_clusters, int) and 1 <= n_clusters <= 64):
            msg = f"n_clusters must be an int in [1, 64], got {n_clusters!r}"
            raise ValueError(msg)
        if not (isinstance(halflife, int | float) and 0 < halflife <= 1):
            msg = f"halflife must be in (0, 1], got {halflife!r}"
            raise ValueError(msg)
        if not (isinstance(warmup, int) and warmup >= n_clusters):
            msg = f"warmup must be an int >= n_clusters ({n_clusters}), got {warmup!r}"
            raise ValueError(msg)
        if not isinstance(seed, int):
            msg = f"seed must be an int, got {seed!r}"
            raise ValueError(msg)
        self.n_clusters = n_clusters
        self.halflife = halflife
        self.warmup = warmup
        self.seed = seed
        self._scaler = preprocessing.StandardScaler()
        self._kmeans = cluster.KMeans(n_clusters=n_clusters, halflife=halflife, seed=seed)
        self._buffer: list[dict[str, float]] | None = []
        self.n_learned = 0

    def clone(self) -> ActivityClusters:
        return clone(self)

    @property
    def ready(self) -> bool:
        """Whether the centres exist (``warmup`` vectors were learned)."""
        return self._buffer is None

    @staticmethod
    def _vector(x: Mapping[str, float]) -> dict[str, float]:
        try:
            return {k: float(x[k]) for k in CLUSTER_FEATURES}
        except KeyError as e:
            msg = f"x must hold the churn features {CLUSTER_FEATURES}, missing {e}"
            raise ValueError(msg) from None

    def _scaled(self, v: dict[str, float]) -> dict[str, float]:
        z = self._scaler.transform_one(v)
        return {k: z[k] for k in CLUSTER_FEATURES}

    def learn(self, x: Mapping[str, float]) -> None:
        """Learn one vector; ``x`` is not modified."""
        v = self._vector(x)
        self._scaler.learn_one(v)
        self.n_learned += 1
        if self._buffer is not None:
            self._buffer.append(v)
            if len(self._buffer) >= self.warmup:
                self._seed_centres(self._buffer)
                self._buffer = None
            return
        self._kmeans.learn_one(self._scaled(v))

    def predict(self, x: Mapping[str, float]) -> int:
        """The cluster of ``x`` (-1 before warm-up)."""
        if self._buffer is not None:
            return -1
        return int(self._kmeans.predict_one(self._scaled(self._vector(x))))

    def centre(self, cluster_id: int) -> dict[str, float]:
        """The centre in standard deviations from the overall mean of each feature."""
        if self._buffer is not None or cluster_id not in self._kmeans.centers:
            msg = f"no cluster {cluster_id!r} (clusters: {self.n_clusters}, ready: {self.ready})"
            raise ValueError(msg)
        c = self._kmeans.centers[cluster_id]
        return {k: float(c[k]) for k in CLUSTER_FEATURES}

    def describe(self, cluster_id: int) -> str:
        """Plain-language description of a cluster from its centre relative to the overall mean.

        Names up to three traits at least half a standard deviation from the mean, strongest
        first, then purchases ("buyers" / "no purchases"); e.g. ``"frequent, long sessions, buyers"`` or ``"occasional, light watchers, no purchases"``.
        """
        z = self.centre(cluster_id)
        notable = []  # (strength, word): the most distinctive traits first
        for name, high, low in _WORDS:
            if z[name] >= _NOTABLE and high:
                notable.append((z[name], high))
            elif z[name] <= -_NOTABLE and low:
                notable.append((-z[name], low))
        notable.sort(key=lambda item: -item[0])
        words = [w for _, w in notable[:_MAX_WORDS]]
        mean = self._scaler.means["purchases_log"]
        std = math.sqrt(self._scaler.vars["purchases_log"])
        purchases = math.expm1(max(0.0, mean + z["purchases_log"] * std))
        if purchases < 0.25:
            words.append("no purchases")
        elif z["purchases_log"] >= _NOTABLE:
            words.append("buyers")
        return ", ".join(words) if words else "typical users"

    def describe_all(self) -> dict[int, str]:
        """``cluster_id -> description`` of every cluster (empty before warm-up)."""
        return {c: self.describe(c) for c in range(self.n_clusters)} if self.ready else {}

    def _seed_centres(self, raw: list[dict[str, float]]) -> None:
        """k-means++ then a few Lloyd passes over the warm-up vectors, scaled as of now."""
        rng = random.Random(self.seed)
        points = [self._scaled(v) for v in raw]

        def d2(a: dict[str, float], b: dict[str, float]) -> float:
            return sum((a[k] - b[k]) ** 2 for k in CLUSTER_FEATURES)

        centres = [dict(rng.choice(points))]
        while len(centres) < self.n_clusters:
            dists = [min(d2(p, c) for c in centres) for p in points]
            total = sum(dists)
            if total <= 0:
                centres.append(dict(rng.choice(points)))
                continue
            r, acc = rng.random() * total, 0.0
            for p, d in zip(points, dists, strict=True):
                acc += d
                if acc >= r:
                    centres.append(dict(p))
                    break
            else:
                centres.append(dict(points[-1]))
        for _ in range(5):
            groups: list[list[dict[str, float]]] = [[] for _ in centres]
            for p in points:
                groups[min(range(len(centres)), key=lambda i: d2(p, centres[i]))].append(p)
            for i, g in enumerate(groups):
                if g:
                    centres[i] = {k: sum(p[k] for p in g) / len(g) for k in CLUSTER_FEATURES}
        for i, c in enumerate(centres):
            self._kmeans.centers[i].clear()
            self._kmeans.centers[i].update(c)
        logger.debug("seeded %d activity clusters from %d vectors", len(centres), len(points))
