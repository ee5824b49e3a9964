"""Offline, prequential evaluation of the live models on any event file."""

from __future__ import annotations

from models.evaluation.metrics import average_precision, ndcg_at, roc_auc
from models.evaluation.prequential import EvalConfig, LabelFeed, PrequentialEvaluator

__all__ = ["EvalConfig", "LabelFeed", "PrequentialEvaluator", "average_precision", "ndcg_at", "roc_auc"]
