"""Training: epochs and optimisers per profile, saved artefacts, resume, and the fixed FER2013 network."""
import json
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest

from fermap_utils import models as M
from fermap_utils import training as T
from fermap_utils.profiles import profile


def test_epochs_follow_the_profile():
    prof = {"epochs_scale": 0.5}
    assert M.epochs_for("SongNet", prof) == 12  # 25 x 0.5, rounded
    assert M.epochs_for("VGG16", {"epochs_scale": 0.1}) == 1  # never below one
    assert M.epochs_for("FER2013", prof) == 0  # fixed, never trained


def test_profile_tune_sets_epochs_and_optimiser_per_network():
    prof = {"epochs_scale": 0.5, "scratch_learning_rate": 1e-3,
            "tune": {"WeiNet": {"epochs": 7, "optimizer": "adam", "learning_rate": 3e-4}}}
    assert M.epochs_for("WeiNet", prof) == 7 and M.epochs_for("SilNet", prof) == 5
    assert M.optimizer_for("WeiNet", prof, pretrained=False) == ("adam", 3e-4)
    assert M.optimizer_for("SilNet", prof, pretrained=False) == ("adam", 1e-4)  # the paper's
    assert M.optimizer_for("VGG16", prof, pretrained=False) == ("adam", 1e-3)  # scratch, not fine-tuning
    assert M.optimizer_for("VGG16", prof, pretrained=True) == ("adam", 1e-4)


def test_confusion():
    c = T.confusion(np.array([0, 0, 1, 5]), np.array([0, 1, 1, 5]))
    assert c.sum() == 4 and c[0, 0] == 1 and c[0, 1] == 1 and c[1, 1] == 1 and c[5, 5] == 1


@pytest.mark.slow
def test_train_run_saves_everything_and_resumes(small_run):
    prof = profile("smoke", {"networks": ["WeiNet", "FER2013"], "input_size": 32, "folds": 1, "epochs_scale": 0.1})
    table = T.train_run(small_run, prof, progress=False)
    assert list(table.network) == ["WeiNet", "FER2013"]
    assert table.synthetic.all()
    wei = small_run / "models" / "WeiNet" / "fold1"
    for name in ("model.keras", "history.csv", "predictions.csv", "metrics.json"):
        assert (wei / name).is_file(), name
    metrics = json.loads((wei / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and metrics["input_size"] == 32 and not metrics["pretrained"]
    preds = pd.read_csv(wei / "predictions.csv")
    assert len(preds) == metrics["n_test"] == np.asarray(metrics["confusion"]).sum()
    assert np.isclose(preds.filter(like="p_").sum(axis=1), 1, atol=1e-4).all()
    assert metrics["accuracy"] == pytest.approx((preds.true == preds.pred).mean())
    fer = json.loads((small_run / "models" / "FER2013" / "fold1" / "metrics.json").read_text())
    assert fer["trained"] is False and fer["epochs"] == 0 and fer["input_size"] == 64
    assert not (small_run / "models" / "FER2013" / "fold1" / "model.keras").exists()
    # a rerun with the same settings retrains nothing
    stamp = (wei / "model.keras").stat().st_mtime_ns
    again = T.train_run(small_run, prof, progress=False)
    assert (wei / "model.keras").stat().st_mtime_ns == stamp
    pd.testing.assert_frame_equal(again, table)
    # an interrupted fold (no metrics.json) is redone on the next run
    (wei / "metrics.json").unlink()
    T.train_run(small_run, prof, progress=False)
    assert (wei / "metrics.json").is_file()


@pytest.mark.slow
def test_data_key_ignores_where_the_sources_were_and_sees_every_image(default_dataset, tmp_path):
    from fermap_utils.rundata import data_key

    copy = tmp_path / "data"
    shutil.copytree(default_dataset, copy)
    key = data_key(default_dataset)
    assert data_key(copy) == key
    records = copy / "records.csv"  # the same images, built from a cache somewhere else
    table = pd.read_csv(records, dtype=str)
    table["source"] = "/elsewhere/" + table["source"].str.rsplit("/", n=1).str[-1]
    table.to_csv(records, index=False)
    assert data_key(copy) == key
    image = copy / table.image.iloc[3]  # one pixel of one image changed: a different dataset
    pixels = cv2.imread(str(image), cv2.IMREAD_GRAYSCALE)
    pixels[0, 0] ^= 1
    cv2.imwrite(str(image), pixels)
    assert data_key(copy) != key
