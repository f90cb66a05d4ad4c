"""The roadmap report: one HTML page with the tables and PNG plots of the analyses, plus
every number as JSON (issue 7, part 5).

Why plain HTML written here: a self-contained page (tables + <img> of PNGs beside it)
opens anywhere without a server; matplotlib's Agg backend draws without a display.
Matplotlib is imported inside the functions so importing this module has no side effects.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from recsys.analysis.exploration import (
    BREADTH_NEW,
    BREADTH_UNPROVEN,
    DEAD_SHARE,
    GINI_NEW,
    NEW_SHARE,
    UNPROVEN_INTERACTIONS,
    UNPROVEN_SHARE,
    ExplorationResult,
)
from recsys.analysis.follow_impact import NDCG, FollowImpactResult
from recsys.analysis.served import ServedImpactResult
from recsys.analysis.text_ablation import TextAblationResult
from recsys.analysis.trend_tuning import TrendTuningResult

REPORT_HTML = "report.html"
REPORT_JSON = "report.json"
PLOT_DPI = 100  # small PNGs: a report page, not a print


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def _table(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return "<p>(no rows)</p>"
    head = "".join(f"<th>{html.escape(k)}</th>" for k in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in r.values()) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _plot_follow_impact(result: FollowImpactResult, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    share = result.share_metric  # authored-by or (no authors) engaged-by followees
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    names = list(result.variants)
    left.bar(names, [result.variants[n][share] for n in names], color="tab:blue")
    left.axhline(result.natural_rate, color="tab:red", linestyle="--", label="natural rate")
    left.set_ylabel("share of feed polls from followees")
    left.tick_params(axis="x", rotation=45)
    left.legend()
    for name, points in result.curve.items():
        right.plot([p[share] for p in points], [p[NDCG] for p in points], marker="o", label=name)
    right.set_xlabel("followee share")
    right.set_ylabel("NDCG@10")
    right.set_title("trade-off over the user-segment weight")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=PLOT_DPI)
    plt.close(fig)


def _plot_trend(result: TrendTuningResult, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    names = [s.frequency for s in result.scores]
    ax.bar(names, [s.ndcg_at_10 for s in result.scores], label="NDCG@10")
    ax.plot(names, [s.precision_at_10 for s in result.scores], "o-", color="tab:orange",
            label="precision@10")
    ax.set_title(f"trend discovery frequency (recommended: {result.recommended})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=PLOT_DPI)
    plt.close(fig)


def _plot_text(result: TextAblationResult, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result.field_contributions()
    fields = sorted({r["field"] for r in rows})
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("ndcg_at_10", "cold_poll_recall_at_25")):
        gains = [next(r["gain"] for r in rows if r["field"] == f and r["metric"] == metric)
                 for f in fields]
        ax.barh(fields, gains, color="tab:green")
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_title(f"loss of {metric} without the field")
    fig.tight_layout()
    fig.savefig(path, dpi=PLOT_DPI)
    plt.close(fig)


def _plot_exploration(result: ExplorationResult, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result.arms)
    panels = (("share of feed slots", ((NEW_SHARE, "new polls"),
                                       (UNPROVEN_SHARE, "unproven polls"),
                                       (DEAD_SHARE, "polls nobody engages with"))),
              ("over all feeds of the arm", ((BREADTH_NEW, "new polls shown / new polls"),
                                             (BREADTH_UNPROVEN,
                                              "unproven polls shown / unproven polls"),
                                             (GINI_NEW, "Gini of new-poll impressions"))))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    x = list(range(len(names)))
    for ax, (ylabel, bars) in zip(axes, panels):
        width = 0.8 / len(bars)
        top = 0.0
        for k, (metric, label) in enumerate(bars):
            heights = [result.arms[n].get(metric, 0.0) for n in names]
            top = max(top, *heights)
            ax.bar([i + (k - (len(bars) - 1) / 2) * width for i in x], heights, width,
                   label=label)
        ax.set_ylim(0, max(top, 0.01) * 1.4)  # room above the bars for the legend
        ax.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=PLOT_DPI)
    plt.close(fig)


def _headroom_text(result: ExplorationResult) -> str:
    h = result.headroom
    if not h:
        return ""
    reach = ", ".join(f"{share:.1%} at weight {w}" for w, share in h["reachable_share"].items())
    return (f" Without exploration, unproven polls sit a median "
            f"{h['median_gap_below_last_slot']:.2f} score units below the feed's last slot; "
            f"an unseen poll's bonus is at most {h['max_bonus_at_weight_1']:g} at weight 1, "
            f"so the share of them within reach is {reach}.")


def _names(names: Sequence[str]) -> str:
    return html.escape(", ".join(names)) if names else "none"


def _comparison_rows(comparisons) -> list[dict[str, Any]]:
    keys = ("treatment", "baseline", "metric", "users", "difference", "ci_low", "ci_high",
            "paired_t_p", "holm_p", "significant")
    return [{k: c.to_json()[k] for k in keys} for c in comparisons]


def write_report(out_dir: Path | str, *, follow: FollowImpactResult | None = None,
                 trend: TrendTuningResult | None = None,
                 text: TextAblationResult | None = None,
                 exploration: ExplorationResult | None = None,
                 served: ServedImpactResult | None = None,
                 not_run: Mapping[str, str] | None = None) -> Path:
    """Write report.html, report.json and the PNGs into ``out_dir``; returns the HTML path.

    ``not_run``: analyses the data cannot support, each with the reason (the page says
    so instead of failing the whole report)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sections, numbers = [], {}
    if follow is not None:
        _plot_follow_impact(follow, out / "follow_impact.png")
        numbers["follow_impact"] = follow.to_json()
        variant_rows = [{"variant": n, **v} for n, v in follow.variants.items()]
        comparison_rows = [{k: c.to_json()[k] for k in (
            "treatment", "baseline", "metric", "users", "difference", "ci_low", "ci_high",
            "paired_t_p", "wilcoxon_p", "holm_p", "z_test_p", "effect_size_dz", "verdict",
            "relative_min_detectable_effect")}
            for c in follow.comparisons]
        if follow.engagement is not None:
            e = follow.engagement.to_json()
            comparison_rows.insert(0, {k: e[k] for k in comparison_rows[0]})
        sections.append(
            "<h2>Follow impact</h2>"
            f"<p>{follow.users} held-out users, seeds {list(follow.seeds)}; natural rate "
            f"{follow.natural_rate:.4g}; graph effect on feed share: "
            f"{follow.verdict['graph_effect']}; follow effect in engagement: "
            f"{follow.verdict['follow_effect_in_engagement']}; best labelling: "
            f"{html.escape(follow.verdict['best_labelling'])}; against their permuted "
            f"control, labellings that raise the followee share: "
            f"{_names(follow.verdict['labels_raise_share'])}; that lower it: "
            f"{_names(follow.verdict['labels_lower_share'])}.</p>"
            + _table(variant_rows) + _table(comparison_rows)
            + '<img src="follow_impact.png" alt="follow impact">')
    if trend is not None:
        _plot_trend(trend, out / "trend_tuning.png")
        numbers["trend_tuning"] = trend.to_json()
        sections.append(
            f"<h2>Trend discovery frequency</h2><p>recommended: "
            f"{html.escape(trend.recommended)}</p>" + _table(trend.to_json()["table"])
            + '<img src="trend_tuning.png" alt="trend tuning">')
    if served is not None:
        numbers["served_follow_impact"] = served.to_json()
        sections.append(
            f"<h2>Follow impact on the served feed</h2><p>{served.users} users, "
            f"{served.served} served polls; follow effect: {served.follow_effect}.</p>"
            + _table([{"source": k, **v} for k, v in served.by_source.items()])
            + _table(_comparison_rows([served.comparison])))
    if text is not None:
        _plot_text(text, out / "text_ablation.png")
        numbers["text_ablation"] = text.to_json()
        sections.append(
            f"<h2>Poll text</h2><p>{text.users} held-out users ({text.cold_users} with cold "
            "polls to find); each row drops one field from the full model.</p>"
            + _table([{"variant": n, **v} for n, v in text.variants.items()])
            + _table(text.field_contributions())
            + "<p>Each field alone against no text, on cold candidates (AUC gain), "
              "most informative first; <code>tied_with_next</code> = the paired "
              "interval of this field minus the next one includes 0, so their order "
              "is not shown by the data:</p>" + _table(text.field_ranking())
            + '<img src="text_ablation.png" alt="text ablation">')
    if exploration is not None:
        _plot_exploration(exploration, out / "exploration.png")
        numbers["exploration"] = exploration.to_json()
        sections.append(
            f"<h2>Exploration</h2><p>replay of held-out time from {exploration.cutoff}, "
            f"{exploration.requests} feeds per arm; "
            f"{exploration.eligible.get('new_polls')} polls were new and "
            f"{exploration.eligible.get('unproven_polls')} unproven (fewer than "
            f"{UNPROVEN_INTERACTIONS} interactions) during it.{_headroom_text(exploration)}"
            "</p>"
            + _table([{"arm": n, **v} for n, v in exploration.arms.items()])
            + _table(_comparison_rows(exploration.comparisons))
            + "<p>Arm-level metrics, paired bootstrap over requests:</p>"
            + _table([c.to_json() for c in exploration.arm_comparisons])
            + '<img src="exploration.png" alt="exploration">')
    if not_run:
        numbers["not_run"] = dict(not_run)
        sections.append("<h2>Not run</h2><ul>" + "".join(
            f"<li>{html.escape(name)}: {html.escape(why)}</li>" for name, why in not_run.items())
            + "</ul>")
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>Hunch roadmap evidence"
            "</title><style>table{border-collapse:collapse}td,th{border:1px solid #ccc;"
            "padding:2px 6px}</style></head><body><h1>Hunch roadmap evidence</h1>"
            + "".join(sections) + "</body></html>")
    (out / REPORT_JSON).write_text(json.dumps(numbers, indent=1) + "\n", encoding="utf-8")
    path = out / REPORT_HTML
    path.write_text(page, encoding="utf-8")
    return path
