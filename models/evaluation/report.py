"""Write an evaluation report: ``report.json`` (a stable interface), ``report.md`` and PNG plots."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import orjson

from models.evaluation.prequential import PrequentialEvaluator

__all__ = ["write_report"]

log = logging.getLogger(__name__)


def _plots(evaluator: PrequentialEvaluator, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    from datetime import UTC, datetime

    import matplotlib.pyplot as plt

    files = []
    series = evaluator.series()["hr"]
    if series:
        xs = [datetime.fromtimestamp(t / 1000, tz=UTC) for t, *_ in series]
        fig, ax = plt.subplots(figsize=(8, 3.5))
        ax.plot(xs, [s[1] for s in series], label="CoursePulse (item-kNN + hybrid ranking)", marker="o", ms=3)
        ax.plot(xs, [s[2] for s in series], label="popularity so far", marker="o", ms=3)
        ax.set_ylabel("HR@10 of discoveries")
        ax.set_title("Recommendations: weekly HR@10 over event time")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.autofmt_xdate()
        fig.tight_layout()
        fig.savefig(out / "recs_hr_over_time.png", dpi=110)
        plt.close(fig)
        files.append("recs_hr_over_time.png")
    tp = evaluator.r.throughput
    if len(tp) > 1:
        fig, ax = plt.subplots(figsize=(8, 3.0))
        rates = [(b[1] - a[1]) / max(b[0] - a[0], 1e-9) for a, b in zip(tp, tp[1:], strict=False)]
        ax.plot([b[1] for b in tp[1:]], rates, marker="o", ms=3)
        ax.set_xlabel("events replayed")
        ax.set_ylabel("events/s")
        ax.set_title("Evaluation throughput")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / "throughput.png", dpi=110)
        plt.close(fig)
        files.append("throughput.png")
    churn = evaluator.churn_series()
    if churn:
        xs = [datetime.fromtimestamp(t / 1000, tz=UTC) for t, _ in churn]
        fig, ax = plt.subplots(figsize=(8, 3.0))
        ax.plot(xs, [a for _, a in churn], marker="o", ms=3)
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.set_ylabel("ROC AUC")
        ax.set_title("Churn risk: weekly ROC AUC of snapshots over event time")
        ax.grid(alpha=0.3)
        fig.autofmt_xdate()
        fig.tight_layout()
        fig.savefig(out / "churn_auc_over_time.png", dpi=110)
        plt.close(fig)
        files.append("churn_auc_over_time.png")
    return files


def _timing(t: dict[str, Any], horizon: float) -> list[str]:
    return [
        "",
        f"Of {t['churners']:,} users who churned, {t['alerted_within_horizon']:,} were alerted within {horizon:g} "
        f"days of their churn time; {t['alerted_before_confirmed']:,} before the churn was confirmed (the user "
        f"gone {horizon:g} days), a median {t['median_lead_days_before_confirmed']} days before it and "
        f"{t['median_days_after_churn_time']} days after the churn time itself.",
    ]


def _baseline_lines(c: dict[str, Any]) -> list[str]:
    b = c.get("baseline")
    if not b:
        return []
    j = c.get("alert_judging") or {}
    return [
        "",
        f"Baseline on the same snapshots, {b['name']}: ROC AUC {b['roc_auc']}, PR AUC {b['pr_auc']}. "
        f"Alerts: lift {c.get('alert_lift')} (precision {j.get('alert_precision')} within the horizon of each "
        f"alert over a base rate of {j.get('base_rate')} among the users snapshotted on the alert days), "
        f"{c.get('alerts_per_active_user')} alerts per user, {j.get('alerts_per_active_user_day')} per active "
        "user-day.",
    ]


def _md(report: dict[str, Any], title: str, plots: list[str]) -> str:
    r, c = report["recs"], report["churn"]
    b = r["baseline"]
    lines = [
        f"# {title}",
        "",
        f"{report['events']:,} events, {report['users']:,} users, {report['catalogue']:,} courses; "
        f"replayed test-then-learn at {report['events_per_s']:,.0f} events/s ({report['elapsed_s']:.1f} s).",
        "",
        "## Recommendations",
        "",
        f"At each of {r['discoveries']:,} discoveries (a user's first view or purchase of a course they never "
        "touched), was the course in the user's last published top-10?",
        "",
        "| | HR@10 | Recall@10 | NDCG@10 |",
        "|---|---|---|---|",
        f"| CoursePulse | {r['hr@10']:.4f} | {r['recall@10']:.4f} | {r['ndcg@10']:.4f} |",
        f"| {b['name']} | {b['hr@10']:.4f} | {b['recall@10']:.4f} | {b['ndcg@10']:.4f} |",
        "",
        f"Lift over the baseline: **{r['lift_over_baseline']}×**; catalogue coverage {r['coverage']:.1%}.",
        "",
        "## Churn",
        "",
        f"Horizon {c['horizon_days']:g} days, labels from {c['labels']}; {c['snapshots']:,} risk snapshots "
        f"({c['positives']:,} positive).",
        "",
        "| ROC AUC | PR AUC | ROC AUC after warm-up | PR AUC after warm-up | alerts | alert precision |"
        + (" AUC as of cutoff |" if "as_of_auc" in c else ""),
        "|---|---|---|---|---|---|" + ("---|" if "as_of_auc" in c else ""),
        f"| {c['roc_auc']} | {c['pr_auc']} | {c['roc_auc_after_warmup']} | {c['pr_auc_after_warmup']} "
        f"| {c['alerts']:,} | {c['alert_precision']} |"
        + (f" {c['as_of_auc']} ({c['as_of_users']:,} users) |" if "as_of_auc" in c else ""),
        "",
        f"The model learned from {c['learned_from']}; warm-up = the first {c['warmup_days']:g} days of the file.",
        *_baseline_lines(c),
        *(_timing(c["alert_timing"], c["horizon_days"]) if c.get("alert_timing") else []),
        "",
    ]
    for p in plots:
        lines += [f"![{p}]({p})", ""]
    return "\n".join(lines)


def write_report(evaluator: PrequentialEvaluator, report: dict[str, Any], out: Path,
                 title: str = "CoursePulse evaluation", notes: str = "") -> list[Path]:
    """Write report.json, report.md and the plots into ``out``; return the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    plots = _plots(evaluator, out)
    md = _md(report, title, plots)
    if notes:
        md += "\n" + notes.strip() + "\n"
    (out / "report.md").write_text(md)
    return [out / "report.json", out / "report.md", *(out / p for p in plots)]
