"""Figures the book and the CLI share: heatmaps over masks, dendrograms."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import dendrogram

from .metrics import average_linkage, binarize

def heatmaps_with_masks(
    heatmaps: dict[str, np.ndarray], masks: dict[str, np.ndarray], title: str = "", otsu: bool = True
) -> plt.Figure:
    """One panel per expression: the heatmap in colour, its mask's outline, and Otsu's region hatched."""
    import cv2

    n = len(heatmaps)
    fig, axes = plt.subplots(1, n, figsize=(2.3 * n, 3.3), squeeze=False)
    for ax, (expr, hm) in zip(axes[0], heatmaps.items()):
        ax.imshow(hm, cmap="jet", vmin=0, vmax=255 if hm.dtype == np.uint8 else 1)
        contours, _ = cv2.findContours(masks[expr].astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        for c in contours:
            ax.plot(c[:, 0, 0], c[:, 0, 1], color="white", lw=1.5)
        if otsu and hm.dtype == np.uint8:
            ax.contour(binarize(hm), levels=[0.5], colors="black", linewidths=0.8, linestyles="dashed")
        ax.set_title(expr, fontsize=10)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig

def dendrograms(matrices: dict[str, pd.DataFrame]) -> plt.Figure:
    """One average-linkage dendrogram of 1 - NCC distances per expression, in one figure."""
    n = len(matrices)
    cols = min(3, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    for ax, (expr, dist) in zip(axes.ravel(), matrices.items()):
        dendrogram(average_linkage(dist), labels=list(dist.index), ax=ax, leaf_rotation=90)
        ax.set_title(expr)
        ax.set_ylabel("1 - NCC")
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def accuracy_figure(table: pd.DataFrame, title: str = "") -> plt.Figure:
    """Accuracy per network (one dot per fold, bar = mean), beside the paper's reported range.

    The paper reports 80-84 % for every network but ResNet50 (74 %). Networks
    trained without the ImageNet weights they should have are hatched and marked
    ``(no ImageNet)``; chance (1/6) is drawn as a line.
    """
    order = list(dict.fromkeys(table.network))
    means = table.groupby("network", sort=False).accuracy.mean().reindex(order)
    cold = table.groupby("network", sort=False).apply(
        lambda g: (~g.pretrained).all() and g.weights.str.contains("unavailable").any()).reindex(order)
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(order) + 2), 3.8))
    xs = np.arange(len(order))
    ax.axhspan(0.80, 0.84, color="tab:green", alpha=0.15, label="paper: 80-84 % (real data)")
    ax.axhline(1 / 6, color="grey", ls=":", lw=1, label="chance (1/6)")
    ax.bar(xs, means.values, color=["white" if c else "tab:blue" for c in cold], edgecolor="tab:blue",
           hatch=None, alpha=0.8)
    for x, c in zip(xs, cold):
        if c:
            ax.bar(x, means.iloc[x], color="none", edgecolor="tab:blue", hatch="//")
    for x, name in zip(xs, order):
        accs = table[table.network == name].accuracy
        ax.scatter(np.full(len(accs), x), accs, color="black", s=12, zorder=3)
        if name == "ResNet50":
            ax.scatter([x], [0.74], marker="_", s=300, color="tab:green", zorder=4)
    ax.set_xticks(xs, [n + (" (no ImageNet)" if c else "") for n, c in zip(order, cold)], rotation=60, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("test accuracy")
    ax.legend(loc="upper right", fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig
