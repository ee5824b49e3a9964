"""Churn learned across partitions: the merge of published parameters, and who scores with it."""

from __future__ import annotations

import math
import pickle
import random

import pytest

from models.churn import OnlineClassifier
from models.pooling import SharedModel, merge, parameters
from models.retention import RetentionModels


def _rows(n: int, seed: int) -> list[tuple[dict[str, float], bool]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        silence = rng.uniform(0, 30)
        x = {"recency_days": silence, "active_days_7": float(rng.randrange(8)), "watch": rng.gauss(5, 2)}
        out.append((x, rng.random() < silence / 30))
    return out


def _learned(rows: list[tuple[dict[str, float], bool]], **kw: object) -> OnlineClassifier:
    clf = OnlineClassifier(model="binned", prior_examples=300, **kw)  # type: ignore[arg-type]
    for x, y in rows:
        clf.learn(x, y)
    return clf


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_the_merged_scaler_pools_the_statistics_and_its_logit_is_the_label_weighted_mean() -> None:
    a_rows, b_rows = _rows(300, 1), _rows(100, 2)
    b_rows = [({**x, "watch": 3 * x["watch"] + 10}, y) for x, y in b_rows]  # another scale there
    a, b = _learned(a_rows), _learned(b_rows)
    both_scaler = _learned(a_rows + b_rows)._scaler  # noqa: SLF001
    m = merge(a, [parameters(a), parameters(b)])
    assert m is not None and m.n_learned == 400
    for k in both_scaler.means:
        assert m._scaler.counts[k] == both_scaler.counts[k] == 400  # noqa: SLF001
        assert m._scaler.means[k] == pytest.approx(both_scaler.means[k], rel=1e-9)  # noqa: SLF001
        assert m._scaler.vars[k] == pytest.approx(both_scaler.vars[k], rel=1e-9)  # noqa: SLF001
    for x, _ in _rows(50, 9):
        expected = (300 * _logit(a.predict_learned(x)) + 100 * _logit(b.predict_learned(x))) / 400
        assert _logit(m.predict_learned(x)) == pytest.approx(expected, abs=1e-9)
    # contributions explain the merged logit, as they do a partition's
    x = _rows(1, 4)[0][0]
    assert m.intercept + sum(c for _, _, c in m.contributions(x)) == pytest.approx(_logit(m.predict_learned(x)))


def test_a_partition_scores_with_the_merge_once_it_knows_more_and_never_checkpoints_it() -> None:
    shared = SharedModel(every=50)
    own, other = _learned(_rows(60, 3)), _learned(_rows(500, 4))
    own.shared = shared
    x = {"recency_days": 12.0, "active_days_7": 1.0, "watch": 4.0}
    alone = OnlineClassifier.predict_proba(pickle.loads(pickle.dumps(own)), x)
    assert own.predict_proba(x) == alone and own.merged_labels is None  # nothing published yet
    assert shared.due(0, own) is not None  # 60 >= 50 labels: partition 0 publishes (and keeps) its own
    assert own.merged_labels is None, "a merge of only its own parameters knows no more than it"
    shared.offer(1, parameters(other))
    assert own.merged_labels == 560
    merged = merge(own, [parameters(own), parameters(other)])
    assert own.predict_proba(x) == pytest.approx(merged.predict_proba(x))
    assert own.contributions(x) == merged.contributions(x)
    blob = pickle.dumps(own)
    restored = pickle.loads(blob)
    assert restored.shared is None and restored.n_learned == 60
    assert len(blob) < len(pickle.dumps(other)) + 4096, "the checkpoint holds one model, not the merge"


def test_parameters_are_kept_per_partition_unless_they_hold_fewer_labels() -> None:
    shared = SharedModel(every=10)
    young, old = parameters(_learned(_rows(20, 5))), parameters(_learned(_rows(80, 6)))
    assert shared.offer(3, old) and not shared.offer(3, young)  # a partition rolled back by a crash
    assert shared.n_learned == 80 and shared.partitions == [3]
    assert shared.offer(3, parameters(_learned(_rows(90, 7))))
    assert shared.n_learned == 90


@pytest.mark.parametrize(("bad", "match"), [
    ({"v": 9}, "format"),
    ({"n": -1}, "n, an int"),
    ({"weights": []}, "weights, an object"),
    ({"means": {"x": float("nan")}}, "finite"),
    ({"intercept": "1"}, "intercept"),
])
def test_bad_parameters_are_refused_with_what_is_wrong(bad: dict, match: str) -> None:
    params = parameters(_learned(_rows(20, 8))) | bad
    with pytest.raises(ValueError, match=match):
        SharedModel().offer(0, params)


def test_every_zero_turns_sharing_off() -> None:
    shared = SharedModel(every=0)
    clf = _learned(_rows(100, 1))
    clf.shared = shared
    assert shared.due(0, clf) is None and shared.get(clf) is None and clf.merged_labels is None


def test_a_restored_checkpoint_scores_with_the_merge_it_was_attached_to() -> None:
    shared = SharedModel(every=10)
    shared.offer(5, parameters(_learned(_rows(400, 2))))
    first = RetentionModels(horizon_days=14.0)
    first.share_with(shared)
    blob = first.checkpoint()
    again = RetentionModels(horizon_days=14.0)
    again.share_with(shared)
    assert again.restore_learned(blob) == "restored"
    assert again.churn.classifier.shared is shared and again.churn.classifier.merged_labels == 400


def test_eval_partitions_publish_through_the_step_and_score_with_the_merge() -> None:
    """``coursepulse eval``'s evaluator: every partition's step owes its parameters every
    ``COURSEPULSE_CHURN_SHARE_EVERY`` labels, the merge holds every partition's, and a
    partition's risks come from it; with 0 each partition scores alone."""
    import dataclasses

    from streams.settings import Settings
    from tools.evaluate import build_evaluator
    from tools.simulator import PlatformSimulator, SimConfig

    records = list(PlatformSimulator(SimConfig(users=240, days=40.0, seed=5, start_ms=1_735_689_600_000)).events())
    published: list[int] = []
    import models.step as step_module

    real_step = step_module.step

    def spy(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        result = real_step(*args, **kwargs)
        if result.churn_params is not None:
            published.append(result.partition)
        return result

    settings = dataclasses.replace(Settings(), churn_share_every=20, partitions=4)
    import models.evaluation.prequential as prequential

    prequential.step, saved = spy, prequential.step
    try:
        evaluator = build_evaluator(settings)
        evaluator.run(records)
    finally:
        prequential.step = saved
    partitions = evaluator.models
    shared = {id(pm.retention.shared) for pm in partitions.values()}
    assert len(shared) == 1 and None not in shared, "one merge for every partition"
    merge_of = next(iter(partitions.values())).retention.shared
    assert len(set(published)) >= 3 and sorted(merge_of.partitions) == sorted(set(published))
    own = [pm.retention.churn.classifier for pm in partitions.values()]
    assert merge_of.n_learned > max(c.n_learned for c in own)
    assert all(c.merged_labels is not None for c in own if c.n_learned < merge_of.n_learned)
    alone = build_evaluator(dataclasses.replace(settings, churn_share_every=0))
    alone.run(records)
    assert all(pm.retention.churn.classifier.merged_labels is None for pm in alone.models.values())
