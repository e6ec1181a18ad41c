"""The paper's own tables (fermap_utils.scoring), read from the reference folder and laid out beside a run's."""
import numpy as np
import pandas as pd

from fermap_utils import scoring


def test_paper_tables_merge_and_paper_layout(tmp_path):
    assert scoring.load_paper_tables(tmp_path) is None
    pd.DataFrame({"network": ["Z", "A", "A", "Average"], "expression": ["Anger", "Anger", "Average", "Anger"],
                  "iou": [0.9, 0.1, 0.2, 0.3], "f1": [0.9, 0.4, 0.5, 0.6]}).to_csv(
        tmp_path / "table3_iou_f1.csv", index=False)
    pd.DataFrame({"network": ["Average", "A", "A"], "expression": ["Anger", "Anger", "Average"],
                  "precision": [0.7, 0.8, 0.9], "recall": [0.11, 0.12, 0.13]}).to_csv(
        tmp_path / "table4_precision_recall.csv", index=False)
    paper = scoring.load_paper_tables(tmp_path)
    row = paper[(paper.network == "Average") & (paper.expression == "Anger")].iloc[0]
    assert (row.iou, row.f1, row.precision, row.recall) == (0.3, 0.6, 0.7, 0.11)  # joined on both keys
    assert list(dict.fromkeys(paper.network)) == ["Z", "A", "Average"]  # Table 3's order, not sorted by name
    # the paper's layout: each expression over its two metrics, networks in the given order
    t = scoring.paper_layout(paper, ["iou", "f1"], ["Anger", "Average"], ["Average", "A", "Q"])
    assert list(t.columns) == [("Anger", "IoU"), ("Anger", "F1"), ("Average", "IoU"), ("Average", "F1")]
    assert list(t.index) == ["Average", "A", "Q"] and t.index.name is None
    assert t.loc["A", ("Average", "IoU")] == 0.2 and t.loc["Average", ("Anger", "F1")] == 0.6
    assert np.isnan(t.loc["Average", ("Average", "IoU")]) and t.loc["Q"].isna().all()
    t4 = scoring.paper_layout(paper, ["precision", "recall"], ["Anger"])  # rows as they first appear
    assert list(t4.index) == ["Z", "A", "Average"] and t4.loc["A", ("Anger", "Recall")] == 0.12
