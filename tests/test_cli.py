"""The fermap command line, end to end, as a user runs it."""
import subprocess
import sys

import cv2
import numpy as np
import pandas as pd
import pytest

from fermap_utils._io import write_gray
from fermap_utils.cli import main
from fermap_utils.config import project_root


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "fermap_utils.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_score_reproduces_tables_3_and_4(reference, tmp_path):
    """The README's command, from the project folder, on the heatmaps shipped in book/data/authors."""
    out = tmp_path / "scores.csv"
    r = run("score", "--heatmaps", "book/data/authors/gray/heatmaps_by_cv", "--out", str(out), cwd=project_root())
    assert r.returncode == 0, r.stderr
    ours = pd.read_csv(out)
    assert list(ours.columns) == ["network", "expression", "iou", "f1", "precision", "recall"]
    for table, cols in (("table3_iou_f1.csv", ["iou", "f1"]), ("table4_precision_recall.csv", ["precision", "recall"])):
        paper = pd.read_csv(reference / table)
        merged = paper.merge(ours, on=["network", "expression"], suffixes=("_paper", ""))
        assert len(merged) == len(paper) == 13 * 7
        for c in cols:
            np.testing.assert_array_equal(merged[c].round(4), merged[f"{c}_paper"].round(4), err_msg=c)


def test_masks_command_writes_the_six_masks(tmp_path, reference):
    assert main(["masks", "--out", str(tmp_path)]) == 0
    for expr in ("Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise"):
        ours = cv2.imread(str(tmp_path / f"{expr}_gt.png"), 0)
        theirs = cv2.imread(str(reference / "ekman_masks" / f"{expr}_gt.png"), 0)
        assert set(np.unique(ours)) == {0, 255}
        np.testing.assert_array_equal(ours > 127, theirs > 127)


def test_similarity_writes_distances_and_dendrograms(reference, tmp_path):
    out = tmp_path / "sim.csv"
    folder = reference / "gray/heatmaps_by_net"
    assert main(["similarity", "--heatmaps", str(folder), "--out", str(out)]) == 0
    d = pd.read_csv(out)
    assert list(d.columns) == ["expression", "net_a", "net_b", "distance"]
    assert len(d) == 6 * 12 * 11 // 2
    assert d.distance.between(0, 2).all()
    row = d[(d.expression == "Fear") & (d.net_a == "AlexNet") & (d.net_b == "VGG16")].iloc[0]
    a = cv2.imread(str(folder / "AlexNet_Fear_heatmap.png"), 0).astype(np.float32)
    b = cv2.imread(str(folder / "VGG16_Fear_heatmap.png"), 0).astype(np.float32)
    assert row.distance == pytest.approx(1 - cv2.matchTemplate(a, b, cv2.TM_CCOEFF_NORMED)[0, 0], abs=1e-5)
    assert "MobileNetV3" in set(d.net_a) | set(d.net_b)  # the paper's names
    png = cv2.imread(str(out.with_suffix(".png")))
    assert png is not None and png.shape[0] > 300


def _heatmap_set(folder):
    rng = np.random.default_rng(0)
    for f in (1, 2):
        for e in ("Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise"):
            write_gray(folder / f"Net_CV{f}_{e}_heatmap.png", rng.integers(0, 256, (275, 224), dtype=np.uint8))


def test_score_on_a_small_set_with_own_masks(tmp_path):
    _heatmap_set(tmp_path / "h")
    out = tmp_path / "s.csv"
    assert main(["score", "--heatmaps", str(tmp_path / "h"), "--out", str(out)]) == 0
    t = pd.read_csv(out)
    assert set(t.network) == {"Net", "Average"} and len(t) == 2 * 7
    # each expression (the table rounds to 4 digits): the mean over the two folds of Otsu's
    # (scikit-image's) IoU and F1 against fermap's mask
    from skimage.filters import threshold_otsu

    from fermap_utils.masks import ekman_masks

    net = t[t.network == "Net"].set_index("expression")
    for e, mask in ekman_masks().items():
        mask = mask.astype(bool)
        kept = [h > threshold_otsu(h) for h in (cv2.imread(str(tmp_path / "h" / f"Net_CV{f}_{e}_heatmap.png"), 0)
                                                for f in (1, 2))]
        inter = [(k & mask).sum() for k in kept]
        assert net.loc[e, "iou"] == pytest.approx(np.mean([i / (k | mask).sum() for i, k in zip(inter, kept)]),
                                                 abs=5e-5)
        assert net.loc[e, "f1"] == pytest.approx(np.mean([2 * i / (k.sum() + mask.sum()) for i, k in zip(inter, kept)]),
                                                abs=5e-5)
    assert net.loc["Average", "iou"] == pytest.approx(net.drop("Average").iou.mean(), abs=5e-5)


@pytest.mark.parametrize("case", ["missing-folder", "missing-expression", "bad-image", "constant"])
def test_bad_input_is_one_line_and_leaves_no_output(tmp_path, case):
    folder = tmp_path / "h"
    if case != "missing-folder":
        _heatmap_set(folder)
    if case == "missing-expression":
        (folder / "Net_CV2_Fear_heatmap.png").unlink()
    if case == "bad-image":
        (folder / "Net_CV1_Sadness_heatmap.png").write_bytes(b"\x00garbage")
    if case == "constant":
        write_gray(folder / "Net_CV1_Anger_heatmap.png", np.zeros((275, 224), np.uint8))
    out = tmp_path / "s.csv"
    r = run("score", "--heatmaps", str(folder), "--out", str(out))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fermap: error: "), r.stderr
    expected = {"missing-folder": "no such folder", "missing-expression": "Net_CV2_Fear_heatmap.png",
                "bad-image": "Net_CV1_Sadness_heatmap.png: not a readable image",
                "constant": "Net_CV1_Anger_heatmap.png: constant heatmap"}[case]
    assert expected in lines[0]
    assert not out.exists() and not list(tmp_path.glob(".s.csv*"))


def test_wrong_size_mask_folder(tmp_path):
    _heatmap_set(tmp_path / "h")
    masks = tmp_path / "m"
    for e in ("Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise"):
        write_gray(masks / f"{e}_gt.png", np.full((100, 100), 255, np.uint8))
    r = run("score", "--heatmaps", str(tmp_path / "h"), "--masks", str(masks), "--out", str(tmp_path / "o.csv"))
    assert r.returncode == 2 and "Anger_gt.png: wrong size 100x100" in r.stderr


@pytest.mark.slow
def test_data_show_reports_the_counts_of_a_built_dataset(small_run, capsys):
    assert main(["data", "show", str(small_run / "data")]) == 0
    out = capsys.readouterr().out
    table = pd.read_csv(small_run / "data" / "records.csv", dtype={"subject": str})
    assert f"{table.subject.nunique()} subjects" in out
    total = [line for line in out.splitlines() if line.strip().startswith("total")][-1]
    assert int(total.split()[-1]) == len(table)  # the crosstab's grand total is every image


def test_models_summary_prints_each_network_and_the_table_1_count(monkeypatch, capsys):
    import fermap_utils.models as M

    table = pd.DataFrame({"network": ["SilNet", "FER2013"], "params": [1234567, 89], "paper_params": [1.2e6, np.nan],
                          "ratio": [1.0288, np.nan], "within_10pct": [True, False]})
    monkeypatch.setattr(M, "summary", lambda check_weights=False: table)
    assert main(["models", "summary"]) == 0
    out = capsys.readouterr().out
    assert "1,234,567" in out and "1,200,000" in out and "1.029" in out
    assert out.strip().splitlines()[-1] == "1 of 1 paper networks within 10 % of Table 1's parameter count"


def test_refactor_equality_finds_a_changed_result(tmp_path):
    """benchmarks/refactor_equality.py: equal runs pass whatever their timings; a changed table, array or
    missing file is named."""
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("refactor_equality", project_root() / "benchmarks"
                                                  / "refactor_equality.py")
    eq = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(eq)
    for name, seconds in (("a", 1.5), ("b", 9.0)):
        run = tmp_path / name
        (run / "models" / "X" / "fold1").mkdir(parents=True)
        (run / "models" / "X" / "fold1" / "metrics.json").write_text(json.dumps({"accuracy": 0.5, "seconds": seconds}))
        (run / "table.csv").write_text("a,b\n1,2\n")
        np.savez(run / "e.npz", key="k", sum=np.arange(4.0))
        (run / "jobs").mkdir()
        (run / "jobs" / "train.json").write_text(json.dumps({"seconds": seconds}))
    assert eq.compare(tmp_path / "a", tmp_path / "b") == ([], 3)  # timings differ, results do not
    np.savez(tmp_path / "b" / "e.npz", key="another cache", sum=np.arange(4.0))  # where the inputs were
    assert eq.compare(tmp_path / "a", tmp_path / "b") == (["provenance differs (not a result): e.npz"], 3)
    assert eq.main([str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    (tmp_path / "b" / "table.csv").write_text("a,b\n1,3\n")
    np.savez(tmp_path / "b" / "e.npz", key="k", sum=np.arange(4.0) + 1e-9)
    (tmp_path / "b" / "extra.png").write_bytes(b"")
    problems, _ = eq.compare(tmp_path / "a", tmp_path / "b")
    assert problems == [f"only in {tmp_path / 'b'}: extra.png", "differs: e.npz", "differs: table.csv"]
    assert eq.main([str(tmp_path / "a"), str(tmp_path / "b")]) == 1


def test_book_command_builds_then_checks_as_reader_and_teacher(monkeypatch, tmp_path, capsys):
    """``fermap book`` builds; with --check it fails (exit 1) on any problem the reader's or the teacher's
    check finds, and names each; without problems it passes."""
    import fermap_utils.book as B
    import fermap_utils.teaching as Te

    html = tmp_path / "_build" / "html"
    built = []
    monkeypatch.setattr(B, "build_book", lambda: built.append(1) or html)
    found = {"reader": ["03_lime: raw TeX"], "teacher": ["05_heatmaps: no summary"]}
    monkeypatch.setattr(B, "check_book", lambda h: list(found["reader"]) if h == html else ["wrong folder"])
    monkeypatch.setattr(Te, "check_teaching", lambda h: list(found["teacher"]) if h == html else ["wrong folder"])
    monkeypatch.setattr(Te, "launch_repository", lambda: "https://example.org/course/fermap")
    assert main(["book"]) == 0 and built == [1]
    assert capsys.readouterr().out.strip() == f"book -> {html}/index.html"  # no check without --check
    monkeypatch.setattr(Te, "launch_repository", lambda: None)  # the shipped placeholder: say what to set
    assert main(["book"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == f"book -> {html}/index.html" and len(lines) == 2
    assert lines[1].startswith("note: built without launch buttons") and "_config.yml" in lines[1]
    with pytest.raises(SystemExit) as failed:
        main(["book", "--check"])
    assert failed.value.code == 1
    out = capsys.readouterr().out
    assert "PROBLEM 03_lime: raw TeX" in out and "PROBLEM 05_heatmaps: no summary" in out
    assert "browser check: 2 problem(s)" in out
    found.update(reader=[], teacher=[])
    assert main(["book", "--check"]) == 0 and "browser check: 0 problem(s)" in capsys.readouterr().out
