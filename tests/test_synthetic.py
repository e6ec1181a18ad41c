"""The embedded default dataset: real faces, FACS-driven expressions, deterministic, subject-grouped."""
import json

import numpy as np
import pandas as pd

from fermap_utils import synthetic as S
from fermap_utils.data import describe_dataset, load_dataset


def test_default_dataset_counts(default_dataset):
    ds = load_dataset(default_dataset)
    t = ds.table
    assert set(t.expression) == {"Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise"}
    assert t.subject.nunique() >= 50 and len(t) >= 1000
    assert ds.images.shape[1] >= 64
    assert (t.groupby("subject").fold.nunique() == 1).all()
    summary = json.loads((default_dataset / "summary.json").read_text())
    assert summary["synthetic"] is True and summary["skipped"] == {}
    assert "SYNTHETIC" in describe_dataset(default_dataset)


def test_deterministic_for_a_seed(default_dataset, tmp_path):
    first = S.generate(tmp_path / "a", progress=False, samples_per_expression=1)
    second = S.generate(tmp_path / "b", progress=False, samples_per_expression=1)
    a, b = pd.read_csv(first), pd.read_csv(second)
    pd.testing.assert_frame_equal(a, b)
    for rel in a.path[::97]:
        assert (first.parent / rel).read_bytes() == (second.parent / rel).read_bytes()


def test_expression_moves_only_its_aus_landmarks():
    face, marks = np.zeros((128, 128), np.uint8), None
    disp = S.expression_displacement("Happiness", {6: 1.0, 12: 1.0})
    moved = set(np.flatnonzero(np.abs(disp).sum(1)) + 1)
    from fermap_utils.masks import action_units

    aus = action_units()
    assert moved == {int(k) for au in (6, 12) for k in aus[au]["displacement"]}
    assert S.expression_displacement("Surprise", {1: 1, 2: 1, 5: 1, 26: 1})[8, 1] > 0  # the chin drops


def test_class_signal_lies_in_the_au_regions():
    """Two renders of one face differing only in expression differ inside that expression's AU regions."""
    from fermap_utils.config import section

    faces = S.neutral_faces(128)[:3]
    params = dict(section("synthetic"), rotation_deg=0.0, scale=[1.0, 1.0], shift=0.0, gamma_sigma=0.0,
                  gradient=0.0, noise=[0.0, 0.0])
    for _, face, lm in faces:
        img, target, _ = S.make_expression(face, lm, "Surprise", np.random.default_rng(0), params)
        moved = np.abs(target - lm).max(axis=1) > 0.5
        diff = np.abs(img.astype(float) - face)
        assert moved.any() and diff.max() > 20
        # the largest changes sit next to the landmarks that moved
        ys, xs = np.unravel_index(np.argsort(diff.ravel())[-50:], diff.shape)
        near = np.min(np.hypot(xs[:, None] - target[moved, 0], ys[:, None] - target[moved, 1]), axis=1)
        assert np.median(near) < 12
