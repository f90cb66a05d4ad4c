"""The clustering report: report.json plus three plots a person can glance at.

``cluster_sizes.png`` (are the labels balanced or one giant group?), ``silhouette_by_k.png``
(silhouette beside the labels' modularity for every k tried: the evidence behind k) and
``projection.png`` (a 2-D PCA of the embedding coloured by community). Plots use
matplotlib's Agg backend, set on the figure itself so importing this module changes no
global state and no display is needed.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.decomposition import PCA

REPORT_JSON = "report.json"
PLOTS = ("cluster_sizes.png", "silhouette_by_k.png", "projection.png")
# More points than this make the scatter a blot and PCA slower for no new information.
PROJECTION_SAMPLE = 5_000
# Bars beyond this many groups are unreadable; the rest are summed into one "other" bar.
MAX_BARS = 40


def write_report(
    out_dir: Path,
    summary: Mapping,
    embedding: np.ndarray | None = None,
    community_labels: np.ndarray | None = None,
    seed: int = 0,
) -> list[Path]:
    """Write report.json and the plots into ``out_dir``; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [write_summary(out_dir, summary)]
    kmeans = summary.get("kmeans", {})
    written.append(
        _bars(
            out_dir / PLOTS[0],
            kmeans.get("sizes", {}),
            summary.get("community_sizes", {}),
        )
    )
    written.append(
        _silhouette_by_k(
            out_dir / PLOTS[1], kmeans.get("silhouette_by_k", {}), kmeans.get("modularity_by_k", {}),
            kmeans.get("k"),
        )
    )
    written.append(_projection(out_dir / PLOTS[2], embedding, community_labels, seed))
    return written


def write_summary(out_dir: Path, summary: Mapping) -> Path:
    """Write (or rewrite) report.json atomically."""
    path = out_dir / REPORT_JSON
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".report-", suffix=".json")
    with os.fdopen(fd, "w") as fh:
        json.dump(summary, fh, indent=2, sort_keys=False)
    os.replace(tmp, path)
    return path


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def _top(sizes: Mapping[str, int]) -> tuple[list[str], list[int]]:
    items = sorted(sizes.items(), key=lambda kv: -kv[1])
    names = [k for k, _ in items[:MAX_BARS]]
    counts = [v for _, v in items[:MAX_BARS]]
    rest = sum(v for _, v in items[MAX_BARS:])
    if rest:
        names.append("other")
        counts.append(rest)
    return names, counts


def _bars(path: Path, clusters: Mapping[str, int], communities: Mapping[str, int]) -> Path:
    fig = Figure(figsize=(10, 6))
    for i, (title, sizes) in enumerate((("K-Means clusters", clusters), ("communities", communities))):
        ax = fig.add_subplot(2, 1, i + 1)
        names, counts = _top(sizes)
        ax.bar(range(len(names)), counts, color="tab:blue" if i == 0 else "tab:green")
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
        ax.set_ylabel("users")
        ax.set_title(f"{title}: users per label")
    return _save(fig, path)


def _silhouette_by_k(
    path: Path, silhouette: Mapping, modularity: Mapping, chosen: int | None
) -> Path:
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot(1, 1, 1)
    ks = sorted(int(k) for k in silhouette)
    ax.plot(ks, [silhouette[_key(silhouette, k)] for k in ks], "o-", label="silhouette")
    ax.plot(ks, [modularity[_key(modularity, k)] for k in ks], "s--", label="modularity of labels")
    if chosen is not None:
        ax.axvline(chosen, color="grey", linestyle=":", label=f"chosen k = {chosen}")
    ax.set_xlabel("k")
    ax.set_title("K-Means: silhouette and modularity by k")
    ax.legend()
    return _save(fig, path)


def _key(mapping: Mapping, k: int):
    # JSON round-trips turn int keys into strings; accept either.
    return k if k in mapping else str(k)


def _projection(
    path: Path, embedding: np.ndarray | None, labels: np.ndarray | None, seed: int
) -> Path:
    fig = Figure(figsize=(6, 6))
    ax = fig.add_subplot(1, 1, 1)
    if embedding is not None and len(embedding) > 2 and embedding.shape[1] >= 2:
        rng = np.random.default_rng(seed)
        idx = np.arange(len(embedding))
        if len(idx) > PROJECTION_SAMPLE:
            idx = np.sort(rng.choice(idx, PROJECTION_SAMPLE, replace=False))
        xy = PCA(n_components=2, random_state=seed).fit_transform(embedding[idx])
        colours = labels[idx] if labels is not None else None
        ax.scatter(xy[:, 0], xy[:, 1], c=colours, s=4, cmap="tab20", alpha=0.7)
    else:
        ax.text(0.5, 0.5, "no embedding to project", ha="center", va="center")
    ax.set_title("embedding, PCA to 2-D, coloured by community")
    return _save(fig, path)
