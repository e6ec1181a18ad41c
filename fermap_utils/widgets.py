"""The book's three interactive widgets, each with a static fallback for the HTML book.

Live (JupyterLab): ipywidgets controls redraw a matplotlib figure. Static (the
built book, where no kernel runs and widget JavaScript would need a CDN): a
client-side player over precomputed frames (matplotlib's ``to_jshtml``, all
inline) or a figure. The chapters pass ``live_widgets``; papermill sets it False.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from .metrics import binarize, otsu_threshold, score_heatmap


def _overlay(ax, heatmap: np.ndarray, mask: np.ndarray, binary: np.ndarray | None = None) -> None:
    ax.imshow(heatmap, cmap="jet", vmin=0, vmax=255)
    ax.contour(mask, levels=[0.5], colors="white", linewidths=1.2)
    if binary is not None and binary.any() and not binary.all():
        ax.contour(binary, levels=[0.5], colors="black", linewidths=0.8, linestyles="dashed")
    ax.axis("off")


def _scores_text(scores: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.3f}" for k, v in scores.items())


def _player(frames: list, draw, figsize=(4.2, 4.4)):
    """A client-side player (inline JavaScript, no CDN) over the frames ``draw(ax, frame)`` paints."""
    from IPython.display import HTML
    from matplotlib.animation import FuncAnimation

    fig, ax = plt.subplots(figsize=figsize)

    def update(i):
        ax.clear()
        draw(ax, frames[i])
        return []

    anim = FuncAnimation(fig, update, frames=len(frames), interval=900)
    html = anim.to_jshtml(default_mode="once")
    plt.close(fig)
    return HTML(html)


# ---------------------------------------------------------------- heatmap explorer

def heatmap_explorer(maps: dict[tuple[str, str, str], np.ndarray], masks: dict[str, np.ndarray]):
    """Live: pick a grouping, a network and an expression; see the heatmap, its mask and its scores.

    ``maps`` is keyed ``(grouping, network, expression)``, grouping being ``fold k``,
    ``all folds`` or ``global`` (network ``all``), as :func:`fermap_utils.heatmaps.load_run_heatmaps` gives.
    """
    import ipywidgets as W

    groupings = list(dict.fromkeys(k[0] for k in maps))
    expressions = list(dict.fromkeys(k[2] for k in maps))
    grouping = W.Dropdown(options=groupings, description="grouping")
    network = W.Dropdown(description="network")
    expression = W.Dropdown(options=expressions, description="expression")
    out = W.Output()

    def networks_for(g):
        return list(dict.fromkeys(k[1] for k in maps if k[0] == g))

    def redraw(*_):
        out.clear_output(wait=True)
        with out:
            key = (grouping.value, network.value, expression.value)
            fig, ax = plt.subplots(figsize=(3.6, 4.2))
            if key in maps:
                hm = maps[key]
                _overlay(ax, hm, masks[key[2]], binarize(hm))
                ax.set_title(f"{key[1]} · {key[2]} · {key[0]}\n{_scores_text(score_heatmap(hm, masks[key[2]]))}",
                             fontsize=7)
            else:
                ax.text(0.5, 0.5, "no heatmap\n(no image predicted as this class)", ha="center", transform=ax.transAxes)
                ax.axis("off")
            plt.show()

    def regroup(*_):
        network.options = networks_for(grouping.value)
        redraw()

    grouping.observe(regroup, names="value")
    network.observe(redraw, names="value")
    expression.observe(redraw, names="value")
    network.options = networks_for(grouping.value)
    redraw()
    return W.VBox([W.HBox([grouping, network, expression]), out])


def heatmap_explorer_static(maps: dict[tuple[str, str, str], np.ndarray], masks: dict[str, np.ndarray]):
    """Static: a player over every (network, expression) heatmap pooled over folds, with its scores."""
    frames = [(k, v) for k, v in maps.items() if k[0] in ("all folds", "global")]

    def draw(ax, frame):
        (g, net, expr), hm = frame
        _overlay(ax, hm, masks[expr], binarize(hm))
        ax.set_title(f"{net} · {expr}\n{_scores_text(score_heatmap(hm, masks[expr]))}", fontsize=7)

    return _player(frames, draw)


# ---------------------------------------------------------------- threshold explorer

def threshold_scores(heatmap: np.ndarray, mask: np.ndarray, thresholds: np.ndarray) -> "pd.DataFrame":
    """IoU, F1, precision and recall of a heatmap at each threshold (pixel > t is kept)."""
    import pandas as pd

    return pd.DataFrame([{"threshold": int(t), **score_heatmap(heatmap, mask, float(t))} for t in thresholds])


def threshold_explorer(heatmap: np.ndarray, mask: np.ndarray, title: str = ""):
    """Live: a threshold slider starting at Otsu's, with the scores at that threshold and the curves."""
    import ipywidgets as W

    otsu = otsu_threshold(heatmap)
    curves = threshold_scores(heatmap, mask, np.arange(0, 255, 5))
    slider = W.IntSlider(value=otsu, min=0, max=254, description="threshold")
    out = W.Output()

    def redraw(*_):
        out.clear_output(wait=True)
        with out:
            fig = _threshold_figure(heatmap, mask, slider.value, otsu, curves, title)
            plt.show()

    slider.observe(redraw, names="value")
    redraw()
    return W.VBox([slider, out])


def _threshold_figure(heatmap, mask, t, otsu, curves, title=""):
    fig, (a, b) = plt.subplots(1, 2, figsize=(7.5, 3.6), gridspec_kw={"width_ratios": [1, 1.6]})
    binary = binarize(heatmap, float(t))
    _overlay(a, heatmap, mask, binary)
    a.set_title(f"{title}\nt = {t}" + (" (Otsu)" if t == otsu else f" (Otsu: {otsu})"), fontsize=8)
    for m in ("iou", "f1", "precision", "recall"):
        b.plot(curves.threshold, curves[m], label=m)
    b.axvline(otsu, color="black", ls=":", lw=1, label="Otsu")
    b.axvline(t, color="tab:red", lw=1)
    s = score_heatmap(heatmap, mask, float(t))
    b.set_title(_scores_text(s), fontsize=7)
    b.set_xlabel("threshold")
    b.legend(fontsize=7)
    fig.tight_layout()
    return fig


def threshold_explorer_static(heatmap: np.ndarray, mask: np.ndarray, title: str = ""):
    """Static: a player over thresholds from 20 to 220 and Otsu's, each with its scores."""
    otsu = otsu_threshold(heatmap)
    frames = sorted({*range(20, 240, 20), otsu})

    def draw(ax, t):
        binary = binarize(heatmap, float(t))
        _overlay(ax, heatmap, mask, binary)
        label = "Otsu" if t == otsu else "slide"
        ax.set_title(f"{title} t = {t} ({label})\n{_scores_text(score_heatmap(heatmap, mask, float(t)))}", fontsize=7)

    return _player(frames, draw)


# ---------------------------------------------------------------- AU mask builder

def au_mask_builder(heatmaps: dict[str, np.ndarray]):
    """Live: toggle action units, see their union as a mask, and score it against a heatmap."""
    import ipywidgets as W

    from .masks import action_units, au_mask, expression_aus

    aus = action_units()
    boxes = {au: W.Checkbox(value=False, description=f"AU{au} {aus[au]['name']}", indent=False,
                            layout=W.Layout(width="260px")) for au in sorted(aus)}
    expression = W.Dropdown(options=list(heatmaps), description="heatmap")
    preset = W.Button(description="Table 2 AUs")
    out = W.Output()

    def redraw(*_):
        out.clear_output(wait=True)
        with out:
            chosen = [au for au, b in boxes.items() if b.value]
            fig, ax = plt.subplots(figsize=(3.6, 4.2))
            hm = heatmaps[expression.value]
            if chosen:
                mask = au_mask(chosen)
                _overlay(ax, hm, mask, binarize(hm))
                ax.set_title(f"AUs {', '.join(map(str, chosen))} vs {expression.value}\n"
                             f"{_scores_text(score_heatmap(hm, mask))}", fontsize=7)
            else:
                ax.imshow(hm, cmap="jet")
                ax.set_title("tick some action units", fontsize=8)
                ax.axis("off")
            plt.show()

    def use_table2(*_):
        wanted = set(expression_aus()[expression.value])
        for au, b in boxes.items():
            b.value = au in wanted

    for b in boxes.values():
        b.observe(redraw, names="value")
    expression.observe(redraw, names="value")
    preset.on_click(use_table2)
    redraw()
    return W.HBox([W.VBox([expression, preset, *boxes.values()]), out])


def au_mask_builder_static(heatmaps: dict[str, np.ndarray]):
    """Static: per expression, the union of its Table 2 AUs over the heatmap, scored; and the Ekman mask."""
    from .masks import au_mask, ekman_masks, expression_aus

    ekman = ekman_masks()
    table2 = expression_aus()
    fig, axes = plt.subplots(2, len(heatmaps), figsize=(1.9 * len(heatmaps), 5.0), squeeze=False)
    for j, (expr, hm) in enumerate(heatmaps.items()):
        for i, (label, mask) in enumerate([(f"AUs {'+'.join(map(str, table2[expr]))}", au_mask(table2[expr])),
                                           ("Ekman mask", ekman[expr])]):
            _overlay(axes[i, j], hm, mask, binarize(hm))
            s = score_heatmap(hm, mask)
            axes[i, j].set_title(f"{expr}: {label}\nIoU {s['iou']:.2f} F1 {s['f1']:.2f}", fontsize=7)
    fig.tight_layout()
    return fig


def show(live: bool, make_live, make_static):
    """Display the live widget in a kernel with a front end, or its static fallback in the book."""
    from IPython.display import display

    shown = make_live() if live else make_static()
    if isinstance(shown, plt.Figure):
        plt.show()
        return None
    display(shown)
    return None
