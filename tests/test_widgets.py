"""Widgets: live versions build and react; static fallbacks are never blank."""
import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from fermap_utils import attention, masks, metrics, widgets
from fermap_utils.config import paper
from fermap_utils.heatmaps import HeatmapKey

EXPRESSIONS = list(paper()["expressions"])


@pytest.fixture(scope="module")
def maps():
    """Heatmaps that are their masks blurred: scores are high and known to be."""
    import cv2

    ekman = masks.ekman_masks()
    out = {}
    for net in ("A", "B"):
        for e in EXPRESSIONS:
            hm = cv2.GaussianBlur(ekman[e].astype(np.float32), (0, 0), 9 if net == "A" else 25)
            hm = np.round(255 * (hm - hm.min()) / (hm.max() - hm.min())).astype(np.uint8)
            out[HeatmapKey(net, None, e)] = hm
            out[HeatmapKey(net, 1, e)] = hm
    for e in EXPRESSIONS:
        out[HeatmapKey(None, None, e)] = out[HeatmapKey("A", None, e)]
    return out


def test_the_threshold_explorer_scores_peak_near_otsu_on_a_blurred_mask(maps):
    hm, mask = maps[HeatmapKey(None, None, "Happiness")], masks.ekman_masks()["Happiness"]
    table = metrics.threshold_scores(hm, mask, np.arange(0, 255, 5))
    assert table.iou.max() > 0.8
    otsu = metrics.score_heatmap(hm, mask)["iou"]
    assert otsu > table.iou.max() - 0.1


def test_static_players_hold_one_frame_per_item(maps):
    ekman = masks.ekman_masks()
    html = widgets.heatmap_explorer_static(maps, ekman).data
    assert "<img" in html or "data:image/png;base64" in html
    assert html.count("data:image/png;base64") >= 2 * len(EXPRESSIONS)  # networks x expressions + global
    html = widgets.threshold_explorer_static(maps[HeatmapKey(None, None, "Anger")], ekman["Anger"]).data
    assert html.count("data:image/png;base64") >= 11


def test_live_widgets_build_and_react(maps):
    ekman = masks.ekman_masks()
    box = widgets.heatmap_explorer(maps, ekman)
    grouping, network, expression = box.children[0].children
    grouping.value = "global"
    assert list(network.options) == ["all"]
    builder = widgets.au_mask_builder({e: maps[HeatmapKey(None, None, e)] for e in EXPRESSIONS})
    controls = builder.children[0].children
    controls[1].click()  # "Table 2 AUs" ticks the expression's AUs
    ticked = [c.description.split()[0] for c in controls[2:] if c.value]
    assert ticked == [f"AU{a}" for a in masks.expression_aus()[controls[0].value]]


def _scores_by_hand(hm: np.ndarray, mask: np.ndarray, t: int) -> str:
    """IoU, F1, precision and recall of ``hm > t`` against ``mask``, counted here, as the widget writes them."""
    kept = hm > t
    tp, fp, fn = (kept & mask).sum(), (kept & ~mask).sum(), (~kept & mask).sum()
    scores = {"iou": tp / (tp + fp + fn), "f1": 2 * tp / (2 * tp + fp + fn), "precision": tp / (tp + fp),
              "recall": tp / (tp + fn)}
    return "  ".join(f"{k} {v:.3f}" for k, v in scores.items())


def test_the_live_threshold_slider_redraws_the_scores_at_its_value(maps):
    """The live explorer starts at Otsu's threshold; moving the slider redraws the figure at the new
    threshold: its title, the red marker on the curves and the four scores, counted here by hand."""
    import matplotlib.pyplot as plt

    hm, mask = maps[HeatmapKey(None, None, "Fear")], masks.ekman_masks()["Fear"].astype(bool)
    otsu = int(metrics.otsu_threshold(hm))
    plt.close("all")
    slider = widgets.threshold_explorer(hm, mask, "Fear").children[0]
    assert slider.value == otsu and plt.get_fignums() == [1]
    image, curves = plt.figure(1).axes
    assert image.get_title() == f"Fear\nt = {otsu} (Otsu)" and curves.get_title() == _scores_by_hand(hm, mask, otsu)
    for t in (10, 200):
        slider.value = t
        image, curves = plt.gcf().axes
        assert image.get_title() == f"Fear\nt = {t} (Otsu: {otsu})"
        assert curves.get_title() == _scores_by_hand(hm, mask, t) != _scores_by_hand(hm, mask, otsu)
        assert list(curves.get_lines()[-1].get_xdata()) == [t, t]  # the red marker
    plt.close("all")


def test_au_builder_fallback_scores_each_heatmap_against_its_aus_and_its_mask(maps):
    """Per expression, a column: the heatmap against the union of its Table 2 AUs, then against its Ekman
    mask, each titled with IoU and F1 at Otsu's threshold, counted here by hand."""
    import matplotlib.pyplot as plt

    heatmaps = {e: maps[HeatmapKey(None, None, e)] for e in EXPRESSIONS}
    fig = widgets.au_mask_builder_static(heatmaps)
    assert len(fig.axes) == 2 * len(EXPRESSIONS)
    axes = np.array(fig.axes).reshape(2, len(EXPRESSIONS))
    for j, (expr, hm) in enumerate(heatmaps.items()):
        aus = masks.expression_aus()[expr]
        kept = hm > metrics.otsu_threshold(hm)
        for i, (label, mask) in enumerate([(f"AUs {'+'.join(map(str, aus))}", masks.au_mask(aus)),
                                           ("Ekman mask", masks.ekman_masks()[expr])]):
            mask = mask.astype(bool)
            tp = (kept & mask).sum()
            iou, f1 = tp / (kept | mask).sum(), 2 * tp / (kept.sum() + mask.sum())
            assert axes[i, j].get_title() == f"{expr}: {label}\nIoU {iou:.2f} F1 {f1:.2f}"
    plt.close(fig)


def test_best_worst_ranks_by_iou():
    table = pd.DataFrame({"network": ["A", "B", "C", "Average"], "expression": ["Fear"] * 4,
                          "iou": [0.2, 0.5, 0.1, 0.27]})
    row = metrics.best_worst(table, k=2).loc["Fear"]
    assert row.best.startswith("1. B (0.500), 2. A") and row.worst.startswith("1. C (0.100)")


def test_click_to_reveal_driven_by_simulated_clicks(astronaut_face, tmp_path):
    import json

    from fermap_utils.data import align_face

    face, marks = align_face(*astronaut_face, size=128)
    hm = {"A": np.full((275, 224), 7, np.uint8)}
    hm["A"][150:220, 60:170] = 250  # a mouth-region heatmap
    game = widgets.ClickToReveal(face, marks, "Happiness", heatmaps=hm, tiles=8, out=str(tmp_path), session="t1")
    grid = game.widget.children[0].children[1]
    for index in (6 * 8 + 3, 6 * 8 + 4, 5 * 8 + 3, 2 * 8 + 2):  # mouth tiles first, then an eye
        grid.children[index].click()
    assert game.clicks == [(6, 3), (6, 4), (5, 3), (2, 2)]
    assert (game.covered() == 128).mean() > 0.8
    game.answer.value = "Happiness"
    game.done.click()
    saved = json.loads((tmp_path / "t1_Happiness.json").read_text())
    assert saved["correct"] and saved["clicks"] == [[6, 3], [6, 4], [5, 3], [2, 2]]
    std = np.asarray(saved["standard_map"])
    assert std.shape == (275, 224) and std.max() == pytest.approx(1.0, abs=1e-3)
    assert saved["scores"]["ncc"]["A"] > 0.2  # mouth clicks resemble a mouth heatmap
    # the saved IoU is Otsu's (scikit-image's, here) on the stretched map against the Happiness mask
    from skimage.filters import threshold_otsu

    from fermap_utils.heatmaps import stretch, to_uint8

    u8 = to_uint8(stretch(std))
    shown, mask = u8 > threshold_otsu(u8), masks.ekman_masks()["Happiness"].astype(bool)
    assert saved["scores"]["mask"]["iou"] == pytest.approx((shown & mask).sum() / (shown | mask).sum())


def test_threshold_fallback_draws_the_score_curves(maps, monkeypatch):
    """The static player's second panel holds IoU and F1 against the threshold, as defined:
    IoU = |B ∩ M| / |B ∪ M| and F1 = 2|B ∩ M| / (|B| + |M|), with B = heatmap > t."""
    import matplotlib.pyplot as plt

    captured = {}
    monkeypatch.setattr(widgets, "_player", lambda frames, draw, **kw: captured.update(frames=frames, draw=draw, **kw))
    hm, mask = maps[HeatmapKey(None, None, "Fear")], masks.ekman_masks()["Fear"].astype(bool)
    widgets.threshold_explorer_static(hm, mask, "Fear")
    fig, axes = plt.subplots(1, 2)
    marker = captured["prepare"](list(axes))
    lines = {ln.get_label(): ln for ln in axes[1].get_lines()}
    t = np.asarray(lines["iou"].get_xdata())
    inter = np.array([(hm[mask] > x).sum() for x in t])
    kept = np.array([(hm > x).sum() for x in t])
    np.testing.assert_allclose(lines["iou"].get_ydata(), inter / (kept + mask.sum() - inter), atol=1e-9)
    np.testing.assert_allclose(lines["f1"].get_ydata(), 2 * inter / (kept + mask.sum()), atol=1e-9)
    captured["draw"](list(axes), 120, marker)  # a frame moves the red marker to its threshold
    assert list(marker.get_xdata()) == [120, 120] and captured["ncols"] == 2
    plt.close(fig)


def test_attention_fallback_shows_the_session_scores(astronaut_face):
    from fermap_utils.heatmaps import stretch, to_uint8
    from fermap_utils.warping import warp_to_standard

    face, marks = astronaut_face
    clicks = [(5, 3), (5, 4), (6, 3), (2, 2)]
    mask = masks.ekman_masks()["Happiness"].astype(bool)
    fig = widgets.attention_static(face, marks, "Happiness", clicks, heatmaps={"A": mask.astype(np.uint8) * 255})
    text = fig._suptitle.get_text()
    standard = to_uint8(stretch(warp_to_standard(attention.attention_from_clicks(clicks, 8, face.shape), marks)[0]))
    kept = standard > metrics.otsu_threshold(standard)
    iou = (kept & mask).sum() / (kept | mask).sum()
    assert f"IoU {iou:.3f}" in text and "NCC with A" in text
