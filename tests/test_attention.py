"""A reader's own attention (fermap_utils.attention): the click order as a map, its scores, and a class's
saved sessions pooled."""
import json

import numpy as np
import pytest

from fermap_utils import attention
from fermap_utils.errors import FermapError


def test_attention_map_follows_the_click_order():
    att = attention.attention_from_clicks([(0, 0), (1, 1), (0, 0)], tiles=2, shape=(4, 4))
    assert att[0, 0] == 1.0 and att[3, 3] == pytest.approx(2 / 3) and att[0, 3] == 0 and att[3, 0] == 0


def test_sessions_pool_into_one_map_per_expression(tmp_path):
    rng = np.random.default_rng(0)
    made = {}
    for k, expr in enumerate(["Happiness", "Happiness", "Fear"]):
        m = rng.random((6, 5))
        made.setdefault(expr, []).append(m)
        folder = tmp_path / f"student{k}"
        folder.mkdir()
        (folder / f"s{k}_{expr}.json").write_text(json.dumps(
            {"session": f"s{k}", "expression": expr, "answer": expr, "correct": True, "clicks": [[0, 0]] * (k + 1),
             "scores": {"mask": {"iou": 0.1 * k}}, "standard_map": m.tolist()}))
    pooled, table = attention.pool_sessions(str(tmp_path), shape=(6, 5))
    np.testing.assert_allclose(pooled["Happiness"], np.mean(made["Happiness"], axis=0))
    np.testing.assert_allclose(pooled["Fear"], made["Fear"][0])
    assert sorted(table.expression) == ["Fear", "Happiness", "Happiness"] and table.tiles.tolist() == [1, 2, 3]
    (tmp_path / "bad_Fear.json").write_text(json.dumps({"expression": "Fear", "standard_map": [[0.0]]}))
    with pytest.raises(FermapError, match="bad_Fear.json"):
        attention.pool_sessions(str(tmp_path), shape=(6, 5))


def test_a_saved_session_is_pooled_back(tmp_path):
    mask = np.zeros((6, 5), bool)
    mask[:3] = True
    standard = attention.attention_from_clicks([(0, 0), (0, 1)], tiles=2, shape=(6, 5))
    scores = attention.score_attention(standard, mask, {})
    result = {"session": "s1", "expression": "Fear", "answer": "Fear", "correct": True, "tiles": 2,
              "clicks": [(0, 0), (0, 1)], "scores": scores, "standard_map": standard.tolist()}
    path = attention.save_session(result, tmp_path)
    assert path == tmp_path / "s1_Fear.json" and json.loads(path.read_text())["expression"] == "Fear"
    pooled, table = attention.pool_sessions(str(tmp_path), shape=(6, 5))
    np.testing.assert_allclose(pooled["Fear"], standard)
    assert scores["mask"]["iou"] == 1.0  # the top half uncovered first: exactly the mask
    assert table.iou_mask.tolist() == [1.0] and table.tiles.tolist() == [2]
