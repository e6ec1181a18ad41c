"""The explainer registry: each explainer declared once, and read by plan, explanations, the schema."""
import re
from pathlib import Path

import pytest

from fermap_utils import explainers, layout
from fermap_utils.config import section
from fermap_utils.errors import FermapError
from fermap_utils.lime import LimeSettings
from fermap_utils.profiles import explain_options, profile, profile_schema, validate_profile

PACKAGE = Path(explainers.__file__).parent


def test_the_registry_and_the_configuration_name_the_same_explainers():
    assert explainers.names() == tuple(section("explainers")) == ("lime", "cam", "gradcam", "extremal")
    assert explainers.names()[0] == layout.PAPER_METHOD
    assert layout.method_folders("extremal") == ("explanations_extremal", "heatmaps_extremal")


def test_an_unknown_explainer_is_one_line():
    with pytest.raises(FermapError, match=r"^unknown explanation method 'shap'; one of lime, cam, gradcam, extremal$"):
        explainers.get("shap")
    with pytest.raises(FermapError, match="unknown explanation method 'shap'"):
        explainers.applicable("shap", "SongNet")


def test_settings_cost_and_images_per_class_come_from_the_profile_over_the_configuration():
    options = explain_options(profile("smoke"))
    lime = explainers.get("lime").settings(options)
    assert lime == LimeSettings(num_samples=200)
    assert explainers.get("lime").passes(lime) == 200
    extremal = explainers.get("extremal").settings(options)
    assert extremal == {**section("explainers")["extremal"], "steps": 150}
    assert explainers.get("extremal").passes(extremal) == 2 * 150  # two areas
    assert explainers.get("gradcam").backward and not explainers.get("cam").backward
    assert [explainers.images_per_class(m, options) for m in explainers.names()] == [2, 2, 2, 1]
    assert explainers.profile_methods(profile("smoke")) == ["lime", "cam", "gradcam", "extremal"]


def test_cam_needs_a_gap_head_and_the_others_explain_every_network():
    assert "global-average-pooling" in explainers.applicable("cam", "SongNet")
    assert explainers.applicable("cam", "EfficientNetLite0") is None
    assert all(explainers.applicable(m, "SongNet") is None for m in ("lime", "gradcam", "extremal"))


def test_the_profile_schema_takes_each_explainers_keys_from_the_registry():
    explain = profile_schema(5)["properties"]["explain"]["properties"]
    assert set(explainers.options_schema()) <= set(explain)
    assert explain["methods"]["items"]["enum"] == list(explainers.names())
    assert explain["classes_per_job"]["maximum"] == len(section("paper")["expressions"])
    with pytest.raises(FermapError, match="explain.extremal_steps"):
        validate_profile({**profile("smoke"), "explain": {"extremal_steps": 0}})
    with pytest.raises(FermapError, match="explain.classes_per_job"):
        validate_profile({**profile("smoke"), "explain": {"classes_per_job": 7}})


@pytest.mark.parametrize("module", ["plan.py", "explanations.py"])
def test_plan_and_explanations_name_no_explainer(module):
    text = (PACKAGE / module).read_text()
    names = "|".join(explainers.names())
    assert not re.findall(rf"[\"']({names})[\"']", text)


def test_layout_does_not_import_the_explainers():
    assert not re.search(r"from \.(attribution|explainers) import", (PACKAGE / "layout.py").read_text())
