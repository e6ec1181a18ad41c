"""Figures of the package (:mod:`fermap_utils.plots`) built from small arrays, without a run."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest

from fermap_utils import plots
from fermap_utils.config import expressions
from fermap_utils.data import resize_images


@pytest.mark.parametrize("size", [None, 16])
def test_expression_panel_shows_identities_by_neutral_and_classes(size):
    """Rows are identities (labelled on the left), columns neutral then the six classes (titled on
    the top row), grey 0..255 without ticks; at ``size`` every face is shown as the networks see it."""
    faces = np.random.default_rng(0).integers(0, 256, (2, 7, 32, 32), dtype=np.uint8)
    names, classes = ["ada", "grace"], list(expressions())
    fig = plots.expression_panel_figure(faces, names, classes, size=size, title="SYNTHETIC: a panel")
    axes = [ax for ax in fig.axes if ax.images]
    assert len(axes) == len(fig.axes) == 2 * 7
    grid = np.array(axes).reshape(2, 7)
    assert [ax.get_title() for ax in grid[0]] == ["neutral", *classes]
    assert all(not ax.get_title() for ax in grid[1])
    assert [ax.get_ylabel() for ax in grid[:, 0]] == names
    assert all(not ax.get_ylabel() for ax in grid[:, 1:].ravel())
    assert all(not ax.get_xticks().size and not ax.get_yticks().size for ax in axes)
    shown = [ax.images[0] for ax in axes]
    assert all(im.get_clim() == (0, 255) and im.get_cmap().name == "gray" for im in shown)
    side = size or 32
    assert all(im.get_array().shape == (side, side) for im in shown)
    if size:
        assert all(im.get_interpolation() == "nearest" for im in shown)
        np.testing.assert_array_equal(shown[8].get_array(), resize_images(faces[1, 1:2], 16)[0])  # area averaging
    else:
        np.testing.assert_array_equal(shown[8].get_array(), faces[1, 1])
    assert fig.get_suptitle() == "SYNTHETIC: a panel"  # the caller's title, as given
    caption, alt = plots.describe_figure(fig)
    assert caption == "SYNTHETIC: a panel" and "grace" in alt and "neutral" in alt
    plt.close(fig)


def test_expression_panel_refuses_faces_that_do_not_match_its_labels():
    faces = np.zeros((2, 6, 8, 8), np.uint8)  # no neutral column
    with pytest.raises(ValueError, match="2 identities x 7 faces"):
        plots.expression_panel_figure(faces, ["a", "b"], list(expressions()))
