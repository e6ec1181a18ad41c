"""The book's interactive widgets, each with a static fallback for the HTML book.

Live (JupyterLab): ipywidgets controls redraw a matplotlib figure. Static (the
built book, where no kernel runs and widget JavaScript would need a CDN): a
client-side player over precomputed frames (matplotlib's ``to_jshtml``, all
inline) or a figure. The chapters pass ``live_widgets``; papermill sets it False.
"""
from __future__ import annotations

from html import escape

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.animation import FuncAnimation

from .attention import attention_from_clicks, covered_face, save_session, score_attention
from .config import expressions as config_expressions
from .heatmaps import HeatmapKey
from .masks import action_units, au_mask, ekman_masks, expression_aus
from .metrics import binarize, otsu_threshold, score_heatmap, threshold_scores
from .plots import describe_figure
from .warping import warp_to_standard


def _overlay(ax, heatmap: np.ndarray, mask: np.ndarray, binary: np.ndarray | None = None) -> None:
    ax.imshow(heatmap, cmap="jet", vmin=0, vmax=255)
    ax.contour(mask, levels=[0.5], colors="white", linewidths=1.2)
    if binary is not None and binary.any() and not binary.all():
        ax.contour(binary, levels=[0.5], colors="black", linewidths=0.8, linestyles="dashed")
    ax.axis("off")


def _scores_text(scores: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.3f}" for k, v in scores.items())


def _player(frames: list, draw, figsize=(4.2, 4.4), ncols: int = 1, prepare=None):
    """A client-side player (inline JavaScript, no CDN) over the frames ``draw(ax, frame)`` paints.

    With ``ncols`` > 1, ``draw`` gets the row of axes; ``prepare(axes)`` draws once what every
    frame shares (and returns the artists ``draw`` may move), so a frame need not redraw it.
    """
    from IPython.display import HTML

    fig, axes = plt.subplots(1, ncols, figsize=figsize, squeeze=False)
    ax = axes[0, 0] if ncols == 1 else list(axes[0])
    shared = prepare(ax) if prepare else None

    def update(i):
        if ncols == 1:
            ax.clear()
            draw(ax, frames[i])
        else:
            draw(ax, frames[i], shared)
        return []

    anim = FuncAnimation(fig, update, frames=len(frames), interval=900)
    html = anim.to_jshtml(default_mode="once")
    update(0)
    alt = escape(f"Player, {len(frames)} frames; first: {describe_figure(fig)[1]}")  # what its frames show
    html = html.replace("<img id=", f'<img alt="{alt}" id=', 1)
    plt.close(fig)
    return HTML(html)


# ---------------------------------------------------------------- heatmap explorer

def heatmap_explorer(maps: dict[HeatmapKey, np.ndarray], masks: dict[str, np.ndarray]):
    """Live: pick a grouping, a network and an expression; see the heatmap, its mask and its scores.

    ``maps`` is keyed by :class:`~fermap_utils.heatmaps.HeatmapKey`, as
    :func:`fermap_utils.explanations.load_run_heatmaps` gives; the groupings offered are ``fold k``,
    ``all folds`` and ``global`` (network ``all``).
    """
    import ipywidgets as W

    maps = {(k.grouping, k.network_label, k.expression): h for k, h in maps.items()}

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


def heatmap_explorer_static(maps: dict[HeatmapKey, np.ndarray], masks: dict[str, np.ndarray]):
    """Static: a player over every (network, expression) heatmap pooled over folds, with its scores."""
    frames = [(k, v) for k, v in maps.items() if k.fold is None]

    def draw(ax, frame):
        key, hm = frame
        expr = key.expression
        _overlay(ax, hm, masks[expr], binarize(hm))
        ax.set_title(f"{key.network_label} · {expr}\n{_scores_text(score_heatmap(hm, masks[expr]))}", fontsize=7)

    return _player(frames, draw)


# ---------------------------------------------------------------- threshold explorer


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
            _threshold_figure(heatmap, mask, slider.value, otsu, curves, title)
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
    """Static: a player over thresholds from 20 to 220 and Otsu's. Each frame shows the
    thresholded heatmap with its scores, beside the IoU, F1, precision and recall curves
    against the threshold, with Otsu's threshold dotted and the frame's one in red."""
    otsu = otsu_threshold(heatmap)
    frames = sorted({*range(20, 240, 20), otsu})
    curves = threshold_scores(heatmap, mask, np.arange(0, 255, 5))

    def prepare(axes):
        plot = axes[1]
        for m in ("iou", "f1", "precision", "recall"):
            plot.plot(curves.threshold, curves[m], label=m)
        plot.axvline(otsu, color="black", ls=":", lw=1, label=f"Otsu ({otsu})")
        plot.set_xlabel("threshold")
        plot.set_ylim(0, 1)
        plot.legend(fontsize=7)
        return plot.axvline(otsu, color="tab:red", lw=1.2)

    def draw(axes, t, marker):
        image = axes[0]
        image.clear()
        _overlay(image, heatmap, mask, binarize(heatmap, float(t)))
        image.set_title(f"{title} t = {t}" + (" (Otsu)" if t == otsu else ""), fontsize=8)
        marker.set_xdata([t, t])
        axes[1].set_title(_scores_text(score_heatmap(heatmap, mask, float(t))), fontsize=7)

    return _player(frames, draw, figsize=(7.5, 3.6), ncols=2, prepare=prepare)


# ---------------------------------------------------------------- AU mask builder

def au_mask_builder(heatmaps: dict[str, np.ndarray]):
    """Live: toggle action units, see their union as a mask, and score it against a heatmap."""
    import ipywidgets as W

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


# ---------------------------------------------------------------- a reader's own attention

class ClickToReveal:
    """The click-to-reveal game: a covered face, tiles uncovered one by one, then a guess.

    When the reader names the expression, the click order becomes an attention map, which is
    warped to the standard face with the image's landmarks and scored against the Ekman mask
    and against each network's heatmap. The session is saved to ``out`` as JSON (clicks,
    answer, scores, the standardised map), so a class can pool its maps.
    """

    def __init__(self, image: np.ndarray, landmarks: np.ndarray, expression: str,
                 heatmaps: dict[str, np.ndarray] | None = None, tiles: int = 8, out: str | None = None,
                 session: str = "reader"):
        import ipywidgets as W

        self.image, self.landmarks, self.expression = np.asarray(image), np.asarray(landmarks), expression
        self.heatmaps, self.tiles, self.out, self.session = heatmaps or {}, tiles, out, session
        self.clicks: list[tuple[int, int]] = []
        self.result: dict | None = None
        self.picture = W.Output()
        self.buttons = [[W.Button(description="", layout=W.Layout(width="34px", height="34px"))
                         for _ in range(tiles)] for _ in range(tiles)]
        for r, row in enumerate(self.buttons):
            for c, b in enumerate(row):
                b.on_click(lambda _b, r=r, c=c: self.reveal(r, c))
        self.answer = W.Dropdown(options=list(config_expressions()), description="It is")
        self.done = W.Button(description="I know it", button_style="success")
        self.done.on_click(lambda _b: self.finish(self.answer.value))
        self.report = W.Output()
        grid = W.GridBox([b for row in self.buttons for b in row],
                         layout=W.Layout(grid_template_columns=f"repeat({tiles}, 36px)"))
        self.widget = W.VBox([W.HBox([self.picture, grid]), W.HBox([self.answer, self.done]), self.report])
        self._draw()

    def covered(self) -> np.ndarray:
        """The face as the reader sees it now."""
        return covered_face(self.image, self.clicks, self.tiles)

    def _draw(self) -> None:
        self.picture.clear_output(wait=True)
        with self.picture:
            fig, ax = plt.subplots(figsize=(3, 3))
            ax.imshow(self.covered(), cmap="gray", vmin=0, vmax=255)
            ax.set_title(f"{len(self.clicks)} tiles uncovered", fontsize=8)
            ax.axis("off")
            plt.show()

    def reveal(self, row: int, col: int) -> None:
        """Uncover one tile (a click)."""
        if self.result is None and (row, col) not in self.clicks:
            self.clicks.append((row, col))
            self.buttons[row][col].button_style = "info"
            self._draw()

    def finish(self, answer: str) -> dict:
        """Name the expression: build, standardise, score and save the attention map."""
        if not self.clicks:
            raise ValueError("uncover at least one tile first")
        attention = attention_from_clicks(self.clicks, self.tiles, self.image.shape)
        standard = warp_to_standard(attention, self.landmarks)[0]
        scores = score_attention(standard, ekman_masks()[self.expression], self.heatmaps)
        self.result = {"session": self.session, "expression": self.expression, "answer": answer,
                       "correct": answer == self.expression, "tiles": self.tiles, "clicks": self.clicks,
                       "scores": scores, "standard_map": np.round(standard, 4).tolist()}
        if self.out:
            self.result["path"] = str(save_session(self.result, self.out))
        self.report.clear_output()
        with self.report:
            m = scores["mask"]
            print(f"{'right' if self.result['correct'] else 'wrong'} ({self.expression}); {len(self.clicks)} tiles; "
                  f"IoU with the Ekman mask {m['iou']:.3f}, ROC-AUC {m['roc_auc']:.3f}")
            for name, v in sorted(scores["ncc"].items(), key=lambda kv: -kv[1]):
                print(f"  NCC with {name}: {v:.3f}")
        return self.result


def attention_static(image: np.ndarray, landmarks: np.ndarray, expression: str, clicks: list[tuple[int, int]],
                     tiles: int = 8, heatmaps: dict[str, np.ndarray] | None = None) -> plt.Figure:
    """Static: how a session turns into a map (for the book): the covered face after the clicks,
    the attention map, and the map on the standard face over the Ekman mask, with the scores the
    live game reports (IoU, F1 and ROC-AUC against the mask; NCC with each network in ``heatmaps``)."""
    attention = attention_from_clicks(clicks, tiles, image.shape)
    standard = warp_to_standard(attention, landmarks)[0]
    scores = score_attention(standard, ekman_masks()[expression], heatmaps or {})
    fig, axes = plt.subplots(1, 3, figsize=(8, 3.6))
    axes[0].imshow(covered_face(np.asarray(image), clicks, tiles), cmap="gray", vmin=0, vmax=255)
    axes[0].set_title(f"{len(clicks)} tiles uncovered", fontsize=8)
    axes[1].imshow(attention, cmap="jet")
    axes[1].set_title("click order (first = hottest)", fontsize=8)
    axes[2].imshow(standard, cmap="jet")
    axes[2].contour(ekman_masks()[expression], levels=[0.5], colors="white", linewidths=1)
    axes[2].set_title(f"standardised, {expression} mask", fontsize=8)
    for a in axes:
        a.axis("off")
    m = scores["mask"]
    line = f"against the {expression} mask: IoU {m['iou']:.3f}  F1 {m['f1']:.3f}  ROC-AUC {m['roc_auc']:.3f}"
    if scores["ncc"]:
        line += "\nNCC with " + "  ".join(f"{n} {v:.3f}"
                                         for n, v in sorted(scores["ncc"].items(), key=lambda kv: -kv[1]))
    fig.suptitle(line, fontsize=8, y=0.02, va="bottom")
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig
