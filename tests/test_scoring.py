"""The paper's own tables (fermap_utils.scoring), read from the reference folder and laid out beside a run's."""
import numpy as np
import pandas as pd

from fermap_utils import scoring


def test_paper_tables_merge_and_side_by_side(tmp_path):
    assert scoring.load_paper_tables(tmp_path) is None
    pd.DataFrame({"network": ["A", "A", "Average"], "expression": ["Anger", "Average", "Anger"],
                  "iou": [0.1, 0.2, 0.3], "f1": [0.4, 0.5, 0.6]}).to_csv(tmp_path / "table3_iou_f1.csv", index=False)
    pd.DataFrame({"network": ["Average", "A", "A"], "expression": ["Anger", "Anger", "Average"],
                  "precision": [0.7, 0.8, 0.9], "recall": [0.11, 0.12, 0.13]}).to_csv(
        tmp_path / "table4_precision_recall.csv", index=False)
    paper = scoring.load_paper_tables(tmp_path)
    row = paper[(paper.network == "Average") & (paper.expression == "Anger")].iloc[0]
    assert (row.iou, row.f1, row.precision, row.recall) == (0.3, 0.6, 0.7, 0.11)  # joined on both keys
    ours = pd.DataFrame({"network": ["B", "B"], "expression": ["Anger", "Average"], "iou": [0.5, 0.25]})
    t = scoring.side_by_side(ours, paper, "iou", ["Anger", "Average"], paper_order=["A"])
    assert list(t.index) == [("fermap", "B"), ("paper (real data)", "A"), ("paper (real data)", "Average")]
    assert t.loc[("paper (real data)", "A"), "Average"] == 0.2 and t.loc[("fermap", "B"), "Anger"] == 0.5
    assert np.isnan(t.loc[("paper (real data)", "Average"), "Average"])
    assert list(scoring.side_by_side(ours, None, "iou", ["Anger", "Average"]).index) == ["B"]
