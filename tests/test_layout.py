"""The run folder's layout: every path named once, and none leading out of the run."""
import pytest

from fermap_utils import layout
from fermap_utils.errors import FermapError


def test_paths_of_a_run(tmp_path):
    run = tmp_path / "run"
    assert layout.model_dir(run, "VGG16", 3) == run / "models" / "VGG16" / "fold3"
    assert layout.metrics_file(run, "VGG16", 3) == run / "models" / "VGG16" / "fold3" / "metrics.json"
    assert layout.predictions_file(run, "VGG16", 3) == run / "models" / "VGG16" / "fold3" / "predictions.csv"
    assert layout.model_file(run, "VGG16", 3) == run / "models" / "VGG16" / "fold3" / "model.keras"
    assert layout.history_file(run, "WeiNet", 10) == run / "models" / "WeiNet" / "fold10" / "history.csv"
    assert layout.class_file(run, "VGG16", 3, "Fear") == run / "explanations" / "VGG16" / "fold3" / "Fear.npz"
    cam = layout.class_file(run, "VGG16", 3, "Fear", "cam")
    assert cam == run / "explanations_cam" / "VGG16" / "fold3" / "Fear.npz"
    assert layout.heatmap_group_dir(run, "heatmaps_by_net", "gradcam") == run / "heatmaps_gradcam" / "heatmaps_by_net"
    assert layout.heatmaps_summary_file(run) == run / "heatmaps" / "summary.json"
    assert layout.heatmaps_summary_file(run, "extremal") == run / "heatmaps_extremal" / "summary.json"
    assert layout.explanations_dir(run, "gradcam") == run / "explanations_gradcam"
    assert layout.heatmap_group_dir(run) == run / "heatmaps" / "heatmaps_by_cv"
    assert (layout.profile_file(run), layout.data_dir(run), layout.jobs_dir(run)) == \
        (run / "run.json", run / "data", run / "jobs")
    assert layout.statistics_dir(run, "sanity_check") == run / "statistics" / "sanity_check"


def test_unknown_names_and_paths_out_of_the_run_are_refused(tmp_path):
    with pytest.raises(FermapError, match="unknown explanation method 'shap'"):
        layout.heatmaps_dir(tmp_path, "shap")
    with pytest.raises(FermapError, match="unknown heatmap folder"):
        layout.heatmap_group_dir(tmp_path, "heatmaps_by_subject")
    with pytest.raises(FermapError, match="leads out of"):
        layout.model_dir(tmp_path, "../../elsewhere", 1)
    (tmp_path / "outside").mkdir()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "explanations").symlink_to(tmp_path / "outside")
    with pytest.raises(FermapError, match="leads out of"):
        layout.class_file(tmp_path / "run", "VGG16", 1, "Fear")


def test_class_files_are_read_back_with_their_keys(tmp_path):
    for net, fold, expr in [("B", 2, "Fear"), ("A", 10, "Anger"), ("A", 1, "Anger")]:
        path = layout.class_file(tmp_path, net, fold, expr)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    (tmp_path / "explanations" / "A" / "fold1" / "notes.txt").write_text("not a class file")
    got = [(n, f, e) for n, f, e, _ in layout.class_files(tmp_path)]
    assert got == [("A", 1, "Anger"), ("A", 10, "Anger"), ("B", 2, "Fear")]
    assert layout.class_files(tmp_path, "cam") == []


@pytest.mark.slow
def test_files_of_a_dataset_folder_are_where_the_builder_writes_them(default_dataset):
    from fermap_utils.data import load_dataset

    data = default_dataset
    assert layout.records_file(data) == data / "records.csv" and layout.records_file(data).is_file()
    assert layout.landmarks_file(data) == data / "landmarks.npy" and layout.landmarks_file(data).is_file()
    assert layout.summary_file(data) == data / "summary.json" and layout.summary_file(data).is_file()
    assert layout.skipped_file(data) == data / "skipped.csv" and layout.skipped_file(data).is_file()
    assert layout.images_dir(data) == data / "images" and layout.images_dir(data).is_dir()
    assert layout.truth_dir(data) == data / "truth" and layout.truth_dir(data).is_dir()  # the synthetic set
    assert layout.planted_file(data) == data / "planted" / "planted_maps.npz" and layout.planted_file(data).is_file()
    ds = load_dataset(data)
    assert all((data / name).is_file() for name in ds.table.image[:3])
    assert (layout.truth_dir(data) / ds.table.image[0].split("/")[-1]).is_file()


def test_authors_folders_and_attention(tmp_path, reference):
    for group in layout.HEATMAP_GROUPS:
        folder = layout.authors_heatmaps_dir(reference, group)
        assert folder == reference / "gray" / group and any(folder.glob("*_heatmap.png"))
    assert layout.authors_heatmaps_dir(reference) == reference / "gray" / "heatmaps_by_cv"
    with pytest.raises(FermapError):
        layout.authors_heatmaps_dir(reference, "gray")
    assert layout.attention_dir(tmp_path) == tmp_path / "attention"
    assert layout.records_file(layout.data_dir(tmp_path)) == tmp_path / "data" / "records.csv"
    assert layout.planted_dir(tmp_path / "data") == tmp_path / "data" / "planted"


def test_metrics_files_are_the_completed_folds_sorted(tmp_path):
    for net, fold in (("VGG16", 2), ("AlexNet", 1), ("VGG16", 1)):
        (tmp_path / "models" / net / f"fold{fold}").mkdir(parents=True)
        (tmp_path / "models" / net / f"fold{fold}" / "metrics.json").write_text("{}")
    (tmp_path / "models" / "WeiNet" / "fold1").mkdir(parents=True)  # started, not finished: no metrics.json
    assert layout.metrics_files(tmp_path) == [tmp_path / "models" / "AlexNet" / "fold1" / "metrics.json",
                                              tmp_path / "models" / "VGG16" / "fold1" / "metrics.json",
                                              tmp_path / "models" / "VGG16" / "fold2" / "metrics.json"]
