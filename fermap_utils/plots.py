"""Figures the book and the CLI share: heatmaps over masks, dendrograms.

Every figure takes a ``title`` that says where its data come from (the chapter's source: SYNTHETIC
data or the authors' real heatmaps); heatmaps carry a colour bar; a network trained from scratch is
labelled so wherever it is drawn beside a pre-trained one (:func:`network_labels`).
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import dendrogram
from skimage.segmentation import mark_boundaries

from .config import expressions as config_expressions
from .config import paper
from .landmarks import standard_points, with_border_points
from .lime import perturb
from .metrics import average_linkage, binarize
from .warping import resize_images, triangulate, warp_to_standard


def describe_figure(fig: plt.Figure) -> tuple[str, str]:
    """A figure's caption and alt text, read from its titles.

    Parameters
    ----------
    fig : Figure
        A figure whose suptitle (or single axes title) says what it shows.

    Returns
    -------
    caption : str
        The suptitle; else the titles of its axes.
    alt : str
        The caption and the titles of its panels, for a reader who cannot see the image.
    """
    panels = [ax.get_title() for ax in fig.axes if ax.get_title()]
    labels = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel() and ax.get_label() != "<colorbar>"]
    suptitle = fig.get_suptitle()
    caption = " ".join(suptitle.split()) or "; ".join(dict.fromkeys(panels)) or "Figure"
    alt = caption
    listed = [t for t in dict.fromkeys(panels + labels) if t not in caption]
    if listed:
        alt += ". Panels: " + ", ".join(" ".join(t.split()) for t in listed[:24]) + ("..." if len(listed) > 24 else "")
    return caption, alt


def network_labels(results: pd.DataFrame) -> dict[str, str]:
    """Each network's name as the book draws it: ``(from scratch)`` when it had no pre-training.

    Parameters
    ----------
    results : DataFrame
        A run's accuracy table (:func:`fermap_utils.rundata.load_results`): ``network``,
        ``pretrained``, ``weights``.

    Returns
    -------
    dict
        Network name to label. A network the paper also trained from scratch, or a fixed one
        (FER2013), keeps its name.
    """
    labels = {}
    for net, g in results.groupby("network", sort=False):
        cold = (~g.pretrained.astype(bool)).all() and g.weights.str.startswith("none").all() \
            and not g.weights.str.contains("as in the paper").any() and not net.endswith("Scratch")
        labels[net] = f"{net} (from scratch)" if cold else net
    return labels


def _colorbar(fig: plt.Figure, image, axes, label: str = "relevance") -> None:
    """One colour bar for heatmap panels that share a scale."""
    bar = fig.colorbar(image, ax=axes, fraction=0.025, pad=0.02)
    bar.set_label(label, fontsize=7)
    bar.ax.tick_params(labelsize=6)


# The 68 landmarks' features (dlib's numbering): jaw, brows, nose bridge, nostrils, eyes, lips.
_FACE_FEATURES = ((range(0, 17), False), (range(17, 22), False), (range(22, 27), False), (range(27, 31), False),
                  (range(31, 36), False), (range(36, 42), True), (range(42, 48), True), (range(48, 60), True),
                  (range(60, 68), True))


def standard_face(ax: plt.Axes, color: str = "black", alpha: float = 0.6, lw: float = 0.8) -> None:
    """Draw the standard face faintly (its jaw, brows, nose, eyes and lips) on an axes showing a map
    on the standard face, so a reader sees where on the face the map's regions lie.

    Parameters
    ----------
    ax : Axes
        Axes showing a (275, 224) image in pixel coordinates.
    color : str
        The lines' colour.
    alpha : float
        Their opacity (faint: the map stays what the eye reads).
    lw : float
        Their width.
    """
    points = standard_points()
    for indices, closed in _FACE_FEATURES:
        xy = points[list(indices) + ([indices[0]] if closed else [])]
        ax.plot(xy[:, 0], xy[:, 1], color=color, alpha=alpha, lw=lw)


def _show_heatmap(ax: plt.Axes, hm: np.ndarray):
    """A heatmap in [0, 1] (a stored 8-bit one divided by 255, as Eq. 1 defines it), over the faint
    standard face when it is drawn on the standard face."""
    values = hm / 255.0 if hm.dtype == np.uint8 else hm
    shown = ax.imshow(values, cmap="jet", vmin=0, vmax=1)
    if hm.shape[:2] == (275, 224):
        limits = ax.get_xlim(), ax.get_ylim()
        standard_face(ax)
        ax.set_xlim(*limits[0])
        ax.set_ylim(*limits[1])
    return shown


def heatmaps_with_masks(
    heatmaps: dict[str, np.ndarray], masks: dict[str, np.ndarray], title: str = "", otsu: bool = True
) -> plt.Figure:
    """One panel per expression: the heatmap in colour, its mask's outline, and Otsu's region hatched."""
    n = len(heatmaps)
    fig, axes = plt.subplots(1, n, figsize=(2.3 * n, 3.3), squeeze=False)
    shown = None
    for ax, (expr, hm) in zip(axes[0], heatmaps.items()):
        shown = _show_heatmap(ax, hm)
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
    if shown is not None:
        _colorbar(fig, shown, axes[0].tolist())
    return fig

def dendrograms(matrices: dict[str, pd.DataFrame], title: str = "") -> plt.Figure:
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
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def accuracy_figure(table: pd.DataFrame, title: str = "") -> plt.Figure:
    """Accuracy per network (one dot per fold, bar = mean), beside the paper's reported range.

    The paper's reported accuracies (``config.yaml``, ``paper.accuracy``: 80-84 % for every
    network but ResNet50, 74 %) are a band and a mark. Networks trained without the ImageNet
    weights they should have are hatched and marked ``(no ImageNet)``; chance (one over the number
    of expressions) is drawn as a line.
    """
    reported = paper()["accuracy"]
    k = len(config_expressions())
    low, high = reported["range"]
    order = list(dict.fromkeys(table.network))
    means = table.groupby("network", sort=False).accuracy.mean().reindex(order)
    cold = table.groupby("network", sort=False).apply(
        lambda g: (~g.pretrained).all() and g.weights.str.contains("unavailable").any()).reindex(order)
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(order) + 2), 3.8))
    xs = np.arange(len(order))
    ax.axhspan(low, high, color="tab:green", alpha=0.15, label=f"paper: {low * 100:.0f}-{high * 100:.0f} % (real data)")
    ax.axhline(1 / k, color="grey", ls=":", lw=1, label=f"chance (1/{k})")
    ax.bar(xs, means.values, color=["white" if c else "tab:blue" for c in cold], edgecolor="tab:blue",
           hatch=None, alpha=0.8)
    for x, c in zip(xs, cold):
        if c:
            ax.bar(x, means.iloc[x], color="none", edgecolor="tab:blue", hatch="//")
    for x, name in zip(xs, order):
        accs = table[table.network == name].accuracy
        ax.scatter(np.full(len(accs), x), accs, color="black", s=12, zorder=3)
        if name in reported["apart"]:
            ax.scatter([x], [reported["apart"][name]], marker="_", s=300, color="tab:green", zorder=4)
    ax.set_xticks(xs, [n + (" (no ImageNet)" if c else "") for n, c in zip(order, cold)], rotation=60, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("test accuracy")
    ax.legend(loc="upper right", fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def face_grid(images: np.ndarray, titles: list[str], landmarks: np.ndarray | None = None, cols: int = 6,
              title: str = "") -> plt.Figure:
    """Faces in a grid, with their landmarks as dots when given (Fig. 1 and 3 style)."""
    n = len(images)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.8 * cols, 1.95 * rows), squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(images[i], cmap="gray", vmin=0, vmax=255)
        if landmarks is not None:
            ax.scatter(landmarks[i][:, 0], landmarks[i][:, 1], s=2, c="lime")
        ax.set_title(titles[i], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def expression_panel_figure(faces: np.ndarray, names: Sequence[str], expressions: Sequence[str],
                            size: int | None = None, title: str = "") -> plt.Figure:
    """Identities by expressions: each row one face, as its neutral twin then each class.

    Parameters
    ----------
    faces : (identities, 1 + classes, s, s) uint8
        Grey faces in 0..255; per identity the neutral twin first, then one face per class
        (:func:`fermap_utils.synthetic.expression_panel`).
    names : sequence of str
        The identities, top to bottom: the row labels.
    expressions : sequence of str
        The classes, in the order of ``faces``' columns after the first: the column titles.
    size : int, optional
        Show each face at ``size`` × ``size`` pixels, resized as the networks' inputs are
        (:func:`fermap_utils.warping.resize_images`: area averaging when shrinking), drawn without
        smoothing so that the pixels show. None: the faces as given.
    title : str
        The figure's title; it says where the faces come from (SYNTHETIC data).

    Returns
    -------
    Figure
        One panel per face, titled by class on the top row and labelled by identity on the left.
    """
    faces = np.asarray(faces)
    rows, cols = len(names), 1 + len(expressions)
    if faces.ndim != 4 or faces.shape[:2] != (rows, cols):
        raise ValueError(f"expected {rows} identities x {cols} faces (neutral + {len(expressions)} classes), "
                         f"found an array of shape {faces.shape}")
    if size:
        faces = resize_images(faces.reshape(-1, *faces.shape[2:]), int(size)).reshape(rows, cols, int(size), int(size))
    fig, axes = plt.subplots(rows, cols, figsize=(1.5 * cols, 1.5 * rows + (0.3 if title else 0.0)),
                             squeeze=False)
    for (i, j), ax in np.ndenumerate(axes):
        ax.imshow(faces[i, j], cmap="gray", vmin=0, vmax=255, interpolation="nearest" if size else None)
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        if i == 0:
            ax.set_title(["neutral", *expressions][j], fontsize=8)
        if j == 0:
            ax.set_ylabel(names[i], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def confusion_matrices(table: pd.DataFrame, expressions: list[str], title: str = "") -> plt.Figure:
    """One confusion matrix per network, summed over its folds (rows: true class)."""
    nets = list(dict.fromkeys(table.network))
    cols = min(4, len(nets))
    rows = -(-len(nets) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.1 * cols, 3.0 * rows), squeeze=False)
    short = [e[:3] for e in expressions]
    labels = network_labels(table) if {"pretrained", "weights"} <= set(table.columns) else {}
    for ax, net in zip(axes.ravel(), nets):
        m = np.sum([np.asarray(c) for c in table[table.network == net].confusion], axis=0)
        ax.imshow(m, cmap="Blues")
        for (i, j), v in np.ndenumerate(m):
            ax.text(j, i, int(v), ha="center", va="center", fontsize=7, color="white" if v > m.max() / 2 else "black")
        ax.set_xticks(range(len(short)), short, fontsize=7, rotation=90)
        ax.set_yticks(range(len(short)), short, fontsize=7)
        ax.set_title(f"{labels.get(net, net)} ({np.trace(m) / m.sum():.0%})", fontsize=9)
    for ax in axes.ravel()[len(nets):]:
        ax.axis("off")
    fig.supxlabel("predicted", fontsize=8)
    fig.supylabel("true", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def lime_steps(image: np.ndarray, explanation, samples: int = 3, title: str = "") -> plt.Figure:
    """LIME on one face: superpixels, some perturbed samples, the weights, the explanation."""
    k = len(explanation.weights)
    fig, axes = plt.subplots(1, 3 + samples, figsize=(2.4 * (3 + samples), 2.8))
    axes[0].imshow(mark_boundaries(image / 255.0, explanation.segments, color=(1, 1, 0)))
    axes[0].set_title(f"SLIC: {k} superpixels", fontsize=8)
    shown = perturb(image, explanation.segments, explanation.rows[1:1 + samples])
    for i, s in enumerate(shown):
        axes[1 + i].imshow(s, cmap="gray", vmin=0, vmax=255)
        axes[1 + i].set_title(f"sample {i + 2}: p = {explanation.targets[i + 1]:.2f}", fontsize=8)
    order = np.argsort(explanation.weights)[::-1]
    axes[1 + samples].bar(range(k), explanation.weights[order],
                          color=["tab:red" if w > 0 else "tab:grey" for w in explanation.weights[order]])
    axes[1 + samples].set_title("ridge weights (sorted)", fontsize=8)
    axes[1 + samples].tick_params(labelsize=7)
    axes[2 + samples].imshow(image, cmap="gray", vmin=0, vmax=255)
    shown = axes[2 + samples].imshow(explanation.image, cmap="jet", alpha=0.55)
    axes[2 + samples].set_title("explanation (positive weights)", fontsize=8)
    for ax in axes[[0, *range(1, 1 + samples), 2 + samples]]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    _colorbar(fig, shown, axes[2 + samples], "weight")
    return fig


def standardisation_steps(image: np.ndarray, landmarks: np.ndarray, explanation: np.ndarray,
                          title: str = "") -> plt.Figure:
    """The 89 points and their triangles on a face, and the face and its explanation on the standard face."""
    src = with_border_points(landmarks, image.shape[1], image.shape[0])
    tri = triangulate(src)
    face, expl = warp_to_standard(image, landmarks, explanation)
    std = standard_points()
    fig, axes = plt.subplots(1, 4, figsize=(11, 3.4))
    axes[0].imshow(image, cmap="gray", vmin=0, vmax=255)
    axes[0].triplot(src[:, 0], src[:, 1], tri, color="yellow", lw=0.5)
    axes[0].scatter(src[:, 0], src[:, 1], s=4, c="red")
    axes[0].set_title("89 points, Delaunay triangles", fontsize=8)
    axes[1].imshow(explanation, cmap="jet")
    axes[1].set_title("explanation (image space)", fontsize=8)
    axes[2].imshow(face, cmap="gray", vmin=0, vmax=255)
    axes[2].triplot(std[:, 0], std[:, 1], tri, color="yellow", lw=0.5)
    axes[2].set_title("face on the standard face", fontsize=8)
    shown = axes[3].imshow(expl, cmap="jet")
    axes[3].set_title("explanation, standardised", fontsize=8)
    for ax in axes:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    _colorbar(fig, shown, axes[3], "weight")
    return fig


def heatmap_grid(maps: dict[tuple[str, str], np.ndarray], masks: dict[str, np.ndarray] | None = None,
                 title: str = "", row_labels: dict[str, str] | None = None) -> plt.Figure:
    """Heatmaps with one row per group (network) and one column per expression; mask outlines if given.

    ``row_labels`` renames rows, e.g. :func:`network_labels` to mark networks trained from scratch.
    """
    rows = list(dict.fromkeys(k[0] for k in maps))
    cols = list(dict.fromkeys(k[1] for k in maps))
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(1.7 * len(cols) + 1.6, 2.05 * len(rows)), squeeze=False)
    shown = None
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            hm = maps.get((r, c))
            if hm is None:
                ax.text(0.5, 0.5, "no images\npredicted", ha="center", va="center", fontsize=7, transform=ax.transAxes)
            else:
                shown = _show_heatmap(ax, hm)
                if masks is not None:
                    contours, _ = cv2.findContours(masks[c].astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
                    for ct in contours:
                        ax.plot(ct[:, 0, 0], ct[:, 0, 1], color="white", lw=0.8)
            if i == 0:
                ax.set_title(c, fontsize=8)
            if j == 0:
                ax.set_ylabel((row_labels or {}).get(r, r), fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    if shown is not None:
        _colorbar(fig, shown, axes.ravel().tolist())
    return fig


def masks_grid(masks: dict[str, np.ndarray], title: str = "", cols: int = 6) -> plt.Figure:
    """Binary masks drawn over the 89 standard points."""
    pts = standard_points()
    n = len(masks)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.8 * cols, 2.3 * rows), squeeze=False)
    for ax, (name, m) in zip(axes.ravel(), masks.items()):
        ax.imshow(m, cmap="gray")
        ax.scatter(pts[:, 0], pts[:, 1], s=2, c="tab:red")
        ax.set_title(f"{name} ({m.mean():.0%})", fontsize=8)
    for ax in axes.ravel():
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def centre_bias_figure(curve: pd.DataFrame, marks: dict[str, float], noise: float | None = None,
                       title: str = "") -> plt.Figure:
    """Mean IoU of a centred Gaussian with the masks against its width, with reported values as lines.

    Parameters
    ----------
    curve : DataFrame
        :func:`fermap_utils.specificity.centre_bias_curve`'s table (index ``sigma``, a ``mean`` column).
    marks : dict
        Label -> IoU to draw as a horizontal line (e.g. the paper's average).
    noise : float, optional
        The white-noise baseline, drawn dotted.
    """
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for column in curve.columns.drop("mean"):
        ax.plot(curve.index, curve[column], lw=0.8, alpha=0.5, label=column)
    ax.plot(curve.index, curve["mean"], color="black", lw=2.2, label="mean over masks")
    for (label, value), colour in zip(marks.items(), ["tab:red", "tab:blue", "tab:green", "tab:purple"]):
        ax.axhline(value, color=colour, ls="--", lw=1.2)
        ax.text(curve.index[-1], value, f" {label} ({value:.3f})", color=colour, va="bottom", ha="right", fontsize=8)
    if noise is not None:
        ax.axhline(noise, color="grey", ls=":", lw=1.2)
        ax.text(curve.index[0], noise, f" white noise ({noise:.3f})", color="grey", va="bottom", fontsize=8)
    ax.set_xlabel("sigma of the centred Gaussian (pixels, on the 224x275 standard face)")
    ax.set_ylabel("IoU with the Ekman mask (Otsu)")
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def accuracy_states_figure(points: pd.DataFrame, values: list[str], chance: dict[str, float] | None = None,
                           title: str = "") -> plt.Figure:
    """Truthfulness against accuracy, one point per state of a network, one row of panels per score.

    Parameters
    ----------
    points : DataFrame
        :func:`fermap_utils.states.accuracy_points`: ``network``, ``epoch``, ``final``, ``accuracy``,
        ``method`` and the ``values`` columns.
    values : list of str
        The score columns, one row of panels each (e.g. ``roc_auc_planted``).
    chance : dict, optional
        ``value column -> level`` drawn as a dotted line (e.g. 0.5 for ROC-AUC).
    title : str
        The figure's title (its data's source).

    Returns
    -------
    Figure
        One panel per (score, explainer); each network's states joined in the order trained, its final
        model drawn filled.
    """
    methods = list(dict.fromkeys(points.method))
    networks = list(dict.fromkeys(points.network))
    colours = dict(zip(networks, plt.get_cmap("tab10").colors))
    fig, axes = plt.subplots(len(values), max(len(methods), 1), figsize=(3.2 * max(len(methods), 1), 3.0 * len(values)),
                             squeeze=False, sharex=True)
    for row, value in enumerate(values):
        for col, method in enumerate(methods):
            ax = axes[row, col]
            for network in networks:
                g = points[(points.method == method) & (points.network == network)].sort_values("epoch")
                if not len(g):
                    continue
                ax.plot(g.accuracy, g[value], "-", color=colours[network], lw=0.8, alpha=0.6)
                ax.scatter(g.accuracy, g[value], s=22, facecolors="none", edgecolors=colours[network])
                final = g[g.final.astype(bool)]
                ax.scatter(final.accuracy, final[value], s=26, color=colours[network],
                           label=network if row == col == 0 else None)
            if chance and value in chance:
                ax.axhline(chance[value], color="grey", ls=":", lw=1)
            ax.set_title(f"{method}", fontsize=9)
            ax.set_xlabel("test accuracy of the state" if row == len(values) - 1 else "")
            if col == 0:
                ax.set_ylabel(value.replace("_", " "))
    if networks:
        fig.legend(loc="lower center", ncol=len(networks), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def show_table(table: pd.DataFrame, decimals: int = 3, caption: str | None = None) -> pd.io.formats.style.Styler:
    """A table for reading: numbers rounded, Average columns and rows last, a default index hidden.

    Parameters
    ----------
    table : DataFrame
        What to show; it is not changed.
    decimals : int
        Digits after the point for every float column but p-values (named ``p_...``), which keep
        two significant digits.
    caption : str, optional
        Shown above the table.

    Returns
    -------
    Styler
        Rendered by the notebook; the book's CSS lets a wide one scroll inside its column. A table
        with two levels of columns (:func:`~fermap_utils.scoring.paper_layout`) gets the class
        ``fermap-two-level``: it scrolls in its own box, its header rows and row labels in view.
    """
    def last(labels) -> list[int]:
        """Positions, those labelled Average (at any level) moved to the end."""
        average = [any(str(part) == "Average" for part in (x if isinstance(x, tuple) else (x,))) for x in labels]
        return [i for i, a in enumerate(average) if not a] + [i for i, a in enumerate(average) if a]

    t = table.iloc[last(table.index), last(table.columns)]
    floats = [c for c in t.columns if pd.api.types.is_float_dtype(t[c])]
    # A p-value keeps two significant digits: rounded to a fixed decimal, a small one would read 0.000.
    p_values = [c for c in floats if str(c[-1] if isinstance(c, tuple) else c).startswith("p_")]
    style = t.style.format(precision=decimals, na_rep="-",
                           subset=[c for c in floats if c not in p_values] or None)
    if p_values:
        style = style.format("{:.2g}", na_rep="-", subset=p_values)
    if isinstance(t.index, pd.RangeIndex):
        style = style.hide(axis="index")  # 0, 1, 2 ... says nothing
    if caption:
        style = style.set_caption(caption)
    if isinstance(t.columns, pd.MultiIndex):
        style = style.set_table_attributes('class="fermap-two-level"')  # book/_static/fermap.css
    return style
