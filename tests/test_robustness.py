"""Issue 16: nothing depends on the cache, nothing escapes the run folder, every bad input or
failure ends in one clear line with nothing half-written."""
from __future__ import annotations

import errno
import json
import os
import pickle
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from fermap_utils import cli
from fermap_utils._io import TEMP_PREFIX, atomic_path, folder_lock, inside, remove_stale_temps
from fermap_utils.errors import FermapError

ROOT = Path(__file__).resolve().parents[1]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """``fermap argv`` in this process: exit code, stdout, stderr."""
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *words: str) -> None:
    assert code == 2, err
    import re

    # Progress bars (tqdm, on stderr) are not messages.
    lines = [line for line in re.split(r"[\r\n]", err) if line.strip() and "%|" not in line]
    assert len(lines) == 1 and lines[0].startswith("fermap: error: "), err
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0], (w, lines[0])


# ---------------------------------------------------------------- determinism, cache-independent


@pytest.fixture()
def tiny_run(tmp_path, tiny_dataset) -> Path:
    """A run folder holding a tiny dataset (4 subjects x 6 expressions, 32 px, 2 folds), written
    directly: random faces with the standard landmarks, enough to train one epoch."""
    return tiny_dataset(tmp_path / "run")


@pytest.mark.slow
def test_training_does_not_depend_on_the_cache_or_on_what_ran_before(tiny_run, tmp_path, monkeypatch):
    """EfficientNet-Lite0 (ported ImageNet weights): an empty cache (the port runs first) and a warm
    one, in a process that built other models in between, give the same predictions, bit for bit.
    (One epoch at 32 px on 24 random faces: the cost is TensorFlow tracing the model twice.)"""
    import keras

    from fermap_utils.data import load_dataset
    from fermap_utils.layout import predictions_file
    from fermap_utils.models import build_network
    from fermap_utils.profiles import profile
    from fermap_utils.training import train_fold

    data = load_dataset(tiny_run / "data")
    prof = profile("smoke", {"input_size": 32, "epochs_scale": 0.1, "augment": True})
    monkeypatch.setenv("FERMAP_CACHE", str(tmp_path / "empty_cache"))

    def predictions(tag: str) -> pd.DataFrame:
        train_fold("EfficientNetLite0", data, 1, prof, tmp_path / tag, progress=False)
        return pd.read_csv(predictions_file(tmp_path / tag, "EfficientNetLite0", 1))

    cold = predictions("cold")  # ports the weights: a throwaway 1000-class model is built first
    assert (tmp_path / "empty_cache" / "efficientnet_lite0_imagenet.weights.h5").is_file()
    # Warm cache, in a process that has built other models and drawn from every global stream.
    build_network("WeiNet", size=32)
    keras.random.normal((3,))
    np.random.rand(5)  # noqa: NPY002 (the legacy global stream is what this test disturbs)
    warm_after_others = predictions("warm_after_others")
    probs = [t.filter(like="p_").to_numpy() for t in (cold, warm_after_others)]
    assert np.array_equal(probs[0], probs[1])
    assert len(np.unique(probs[0].round(6))) > 6  # a real prediction, not a constant


# ---------------------------------------------------------------- parameters checked before any work


@pytest.mark.parametrize("key, value, words", [
    ("explain.num_samples", "abc", ["explain.num_samples", "'abc'", "integer >= 2"]),
    ("explain.num_samples", "-5", ["explain.num_samples", "-5", "integer >= 2"]),
    ("explain.num_samples", "0", ["explain.num_samples", "0", "integer >= 2"]),
    ("folds", "0", ["'folds'", "0", "<= 5"]),
    ("folds", "[7]", ["folds[0]", "7", "<= 5"]),
    ("networks", "[NoSuchNet]", ["networks[0]", "NoSuchNet", "WeiNet"]),
    ("epoch_scale", "2", ["unknown key 'epoch_scale'", "did you mean epochs_scale"]),
    ("tune", "{WeiNet: {epoch: 3}}", ["tune.WeiNet.epoch", "epochs"]),
    ("bn_momentum", "1.5", ["bn_momentum", "1.5", "< 1"]),
    ("explain.methods", "[cam, nope]", ["explain.methods[1]", "nope", "gradcam"]),
    ("seed", "[1", ["-p seed", "not a valid value"]),
])
def test_bad_parameters_are_one_line_before_anything_is_written(capsys, tmp_path, key, value, words):
    run = tmp_path / "run"
    code, out, err = run_cli(capsys, "train", "--profile", "smoke", "--run", run, "-p", key, value)
    assert_one_line_error(code, err, *words)
    assert not run.exists()  # nothing built, nothing written


def test_explain_checks_its_overrides_and_the_runs_profile(capsys, tiny_run):
    (tiny_run / "run.json").write_text(json.dumps({"name": "smoke", "networks": ["FER2013"], "folds": 1}))
    code, _, err = run_cli(capsys, "explain", "--run", tiny_run, "-p", "explain.num_samples", "0")
    assert_one_line_error(code, err, "run.json", "explain.num_samples", "integer >= 2")
    (tiny_run / "run.json").write_text(json.dumps({"name": "smoke", "networks": ["FER2013"], "folds": [3]}))
    code, _, err = run_cli(capsys, "explain", "--run", tiny_run)
    assert_one_line_error(code, err, "folds[0]", "<= 2")  # the run's dataset has 2 folds
    assert sorted(p.name for p in tiny_run.iterdir()) == ["data", "run.json"]


def test_a_malformed_or_wrong_profile_file_is_one_line(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: smoke\nnetworks: [WeiNet\n")
    code, _, err = run_cli(capsys, "train", "--config", bad, "--run", tmp_path / "run")
    assert_one_line_error(code, err, str(bad), "malformed YAML", "line")
    bad.write_text("base: smoke\nepochs: 3\n")
    code, _, err = run_cli(capsys, "train", "--config", bad, "--run", tmp_path / "run")
    assert_one_line_error(code, err, str(bad), "unknown key 'epochs'")
    bad.write_text("- a list\n")
    code, _, err = run_cli(capsys, "train", "--config", bad, "--run", tmp_path / "run")
    assert_one_line_error(code, err, "expected a mapping")
    assert not (tmp_path / "run").exists()


def test_every_shipped_profile_passes_the_schema_and_the_schema_knows_every_key():
    from fermap_utils.config import section
    from fermap_utils.profiles import load_profile, profile_schema, validate_profile

    schema = profile_schema(5)  # the schema file with the explainers' own keys (fermap_utils/explainers.py)
    for name, prof in section("profiles").items():
        validate_profile(load_profile(name))
        assert set(prof) <= set(schema["properties"]), name
        assert set(prof.get("explain") or {}) <= set(schema["properties"]["explain"]["properties"]), name
    # A number written the way people write it is a number (YAML 1.1 reads 1e-3 as text).
    prof = load_profile("smoke", overrides=cli_overrides("scratch_learning_rate", "1e-3"))
    assert prof["scratch_learning_rate"] == 1e-3


def cli_overrides(key: str, value: str) -> dict:
    from fermap_utils.profiles import parse_overrides

    return parse_overrides([[key, value]])


def test_a_fold_the_dataset_lacks_is_refused_before_training(tiny_run):
    from fermap_utils.profiles import profile
    from fermap_utils.training import train_run

    prof = profile("smoke", {"networks": ["WeiNet"], "folds": [3]})  # valid for 5 folds; the run has 2
    with pytest.raises(FermapError, match=r"no fold 3 in .*its folds: 1, 2"):
        train_run(tiny_run, prof, progress=False)
    assert not (tiny_run / "models" / "WeiNet" / "fold3").exists()


# ---------------------------------------------------------------- outputs: one line, all or none


def test_output_locations_that_cannot_be_written_are_one_line(capsys, tmp_path):
    folder = tmp_path / "a_folder.csv"
    folder.mkdir()
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    heatmaps = tmp_path / "none"
    cases = [
        (["score", "--heatmaps", heatmaps, "--out", folder], ["is a folder"]),
        (["similarity", "--heatmaps", heatmaps, "--out", folder], ["is a folder"]),
        (["masks", "--out", a_file], ["is a file"]),
        (["masks", "--out", a_file / "sub"], ["is a file"]),
        (["data", "build", "--default", "--out", a_file], ["is a file"]),
        (["masks", "--out", "/proc/fermap_masks"], ["/proc"]),  # a location nobody can write, even root
        (["score", "--heatmaps", heatmaps, "--out", "/proc/fermap_t3.csv"], ["/proc"]),
    ]
    for argv, words in cases:
        code, _, err = run_cli(capsys, *argv)
        assert_one_line_error(code, err, *words)
    assert a_file.read_text() == "x" and not any(folder.iterdir())


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write in a read-only folder")
def test_a_read_only_folder_is_one_line(capsys, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    code, _, err = run_cli(capsys, "masks", "--out", ro)
    assert_one_line_error(code, err, "not writable")


def test_masks_are_written_all_or_none(capsys, tmp_path, monkeypatch):
    out = tmp_path / "masks"
    (out / "Fear_gt.png").mkdir(parents=True)  # a target inside the output that is a folder
    code, _, err = run_cli(capsys, "masks", "--out", out)
    assert_one_line_error(code, err, "Fear_gt.png", "is a folder")
    assert sorted(p.name for p in out.iterdir()) == ["Fear_gt.png"]
    (out / "Fear_gt.png").rmdir()
    # A disk that fills up at the third mask: none of the six is left behind.
    real, calls = cv2.imencode, []

    def full_disk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(out))
        return real(*args, **kwargs)

    monkeypatch.setattr(cv2, "imencode", full_disk)
    code, _, err = run_cli(capsys, "masks", "--out", out)
    assert_one_line_error(code, err, "No space left on device")
    assert list(out.iterdir()) == []
    monkeypatch.setattr(cv2, "imencode", real)
    code, _, _ = run_cli(capsys, "masks", "--out", out)
    assert code == 0 and len(list(out.glob("*_gt.png"))) == 6
    mode = stat.S_IMODE((out / "Anger_gt.png").stat().st_mode)
    assert mode == 0o666 & ~_umask()  # the user's normal mode, not mkstemp's 0600


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _by_net_heatmaps(folder: Path, nets: list[str], extra: tuple[str, ...] = ()) -> Path:
    from fermap_utils.config import paper
    from fermap_utils.heatmaps import heatmap_filename, save_heatmap

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for n in nets:
        for e in list(paper()["expressions"]) + list(extra):
            save_heatmap(folder / heatmap_filename(e, n), rng.random((275, 224)))
    return folder


def test_similarity_writes_csv_and_png_together_or_neither(capsys, tmp_path):
    maps = _by_net_heatmaps(tmp_path / "maps", ["WeiNet", "SilNet"])
    out = tmp_path / "sim.csv"
    (tmp_path / "sim.png").mkdir()  # the PNG cannot be written
    code, _, err = run_cli(capsys, "similarity", "--heatmaps", maps, "--out", out)
    assert_one_line_error(code, err, "sim.png", "is a folder")
    assert not out.exists()
    (tmp_path / "sim.png").rmdir()
    code, _, _ = run_cli(capsys, "similarity", "--heatmaps", maps, "--out", out)
    assert code == 0 and out.is_file() and (tmp_path / "sim.png").is_file()


def test_similarity_with_one_network_says_clustering_needs_two(capsys, tmp_path):
    maps = _by_net_heatmaps(tmp_path / "maps", ["WeiNet"])
    code, _, err = run_cli(capsys, "similarity", "--heatmaps", maps, "--out", tmp_path / "s.csv")
    assert_one_line_error(code, err, "clustering needs at least two networks", "found 1")
    assert not (tmp_path / "s.csv").exists()


def test_a_heatmap_of_another_expression_is_reported_not_ignored_silently(capsys, tmp_path):
    maps = _by_net_heatmaps(tmp_path / "maps", ["WeiNet", "SilNet"], extra=("Contempt",))
    code, out, err = run_cli(capsys, "similarity", "--heatmaps", maps, "--out", tmp_path / "s.csv")
    assert code == 0
    warning = [line for line in err.splitlines() if "Contempt" in line]
    assert len(warning) == 1 and warning[0].startswith("fermap: warning: ") and "ignored 2 heatmap(s)" in warning[0]
    assert "SilNet_Contempt_heatmap.png" in warning[0]


# ---------------------------------------------------------------- data build


@pytest.fixture()
def face_files(tmp_path, astronaut_face):
    """The astronaut as an 8-bit and a 16-bit PNG, with a good, a bad and a missing landmarks file."""
    gray, marks = astronaut_face
    root = tmp_path / "faces"
    root.mkdir()
    cv2.imwrite(str(root / "a8.png"), gray)
    cv2.imwrite(str(root / "a16.png"), gray.astype(np.uint16) * 257)
    np.savetxt(root / "good.txt", marks)
    (root / "bad.txt").write_text("1 2\n3 4\n")
    return root


def _manifest(root: Path, rows: list[tuple[str, str, str, str]]) -> Path:
    path = root / "manifest.csv"
    pd.DataFrame(rows, columns=["path", "subject", "expression", "landmarks"]).to_csv(path, index=False)
    config = root / "datasets.yaml"
    config.write_text(yaml.safe_dump({"datasets": [{"name": "T", "adapter": "manifest", "manifest": str(path)}],
                                      "crop_size": 32}))
    return config


def test_data_build_skips_bad_landmarks_converts_16_bit_and_leaves_no_stale_image(capsys, face_files, tmp_path):
    config = _manifest(face_files, [("a8.png", "s1", "happy", "good.txt"), ("a16.png", "s2", "sad", "good.txt"),
                                    ("a8.png", "s3", "anger", "bad.txt"), ("a8.png", "s4", "fear", "missing.txt")])
    out = tmp_path / "data"
    code, stdout, err = run_cli(capsys, "data", "build", "--config", config, "--out", out)
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["used"] == 2  # the 16-bit image is converted, not refused
    skipped = pd.read_csv(out / "skipped.csv")
    reasons = dict(zip(skipped.path.map(lambda p: Path(p).name), skipped.reason))
    assert len(skipped) == 2 and all("landmarks" in r for r in reasons.values()), reasons
    crops = [cv2.imread(str(out / p), cv2.IMREAD_UNCHANGED) for p in pd.read_csv(out / "records.csv").image]
    assert np.abs(crops[0].astype(int) - crops[1].astype(int)).max() <= 1  # 16-bit = 8-bit x 257
    # A rebuild with fewer images leaves no stale one, and no temporary folder.
    config = _manifest(face_files, [("a8.png", "s1", "happy", "good.txt")])
    code, _, err = run_cli(capsys, "data", "build", "--config", config, "--out", out)
    assert code == 0, err
    assert sorted(p.name for p in (out / "images").iterdir()) == ["00000.png"]
    assert not [p for p in out.iterdir() if p.name.startswith(TEMP_PREFIX)]


def test_data_build_with_every_row_skipped_shows_the_reasons_and_writes_them(capsys, face_files, tmp_path):
    config = _manifest(face_files, [("a8.png", "s1", "happy", "bad.txt"), ("nope.png", "s2", "sad", "")])
    out = tmp_path / "data"
    code, _, err = run_cli(capsys, "data", "build", "--config", config, "--out", out)
    assert_one_line_error(code, err, "no image could be used", "2 skipped", "no such file", "68 landmarks",
                          "skipped.csv")
    assert len(pd.read_csv(out / "skipped.csv")) == 2
    assert not (out / "records.csv").exists() and not (out / "images").exists()


def test_a_malformed_datasets_file_is_one_line(capsys, tmp_path):
    bad = tmp_path / "d.yaml"
    for text, words in [("datasets: [{name: x\n", ["malformed YAML"]),
                        ("datasets: [just-a-name]\n", ["datasets entry 1", "expected a mapping"]),
                        ("datasets: [{name: x, adapter: folders, root: r}]\nfolds: two\n", ["'folds'", "'two'"])]:
        bad.write_text(text)
        code, _, err = run_cli(capsys, "data", "build", "--config", bad, "--out", tmp_path / "out")
        assert_one_line_error(code, err, str(bad), *words)


# ---------------------------------------------------------------- temporary files, modes, lock


def test_a_killed_write_leaves_a_temp_file_that_the_next_run_removes(tmp_path):
    run = tmp_path / "run"
    (run / "models").mkdir(parents=True)
    code = textwrap.dedent(f"""
        import os, time
        from fermap_utils._io import atomic_path
        with atomic_path({str(run / "models" / "model.keras")!r}) as tmp:
            tmp.write_bytes(b"x" * 100000)
            print("writing", flush=True)
            time.sleep(60)
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
    finally:
        proc.kill()  # kill -9 in the middle of the write
        proc.wait(timeout=30)
        proc.stdout.close()
    stale = [p for p in (run / "models").iterdir()]
    assert len(stale) == 1 and stale[0].name.startswith(TEMP_PREFIX) and not (run / "models" / "model.keras").exists()
    (run / "models" / ".history.csv.k3j_x9qa.csv").write_text("left by an older fermap")
    (run / "models" / ".keep_me").write_text("not fermap's")
    with folder_lock(run):
        assert [p.name for p in (run / "models").iterdir()] == [".keep_me"]


def test_outputs_get_the_users_normal_mode(tmp_path):
    with atomic_path(tmp_path / "x.csv") as tmp:
        tmp.write_text("a\n")
    assert stat.S_IMODE((tmp_path / "x.csv").stat().st_mode) == 0o666 & ~_umask()


def test_a_second_process_on_a_run_folder_is_told_who_holds_it(capsys, tmp_path):
    run = tmp_path / "run"
    with folder_lock(run, "fermap train"):
        with pytest.raises(FermapError, match=rf"in use by process {os.getpid()} .*fermap train"):
            with folder_lock(run, "fermap explain"):
                pass
        (run / "run.json").write_text(json.dumps({"name": "smoke", "networks": ["WeiNet"]}))
        code, _, err = run_cli(capsys, "explain", "--run", run)
        assert_one_line_error(code, err, "in use by process", "fermap train")
    with folder_lock(run, "fermap explain"):  # released with its holder
        pass


# ---------------------------------------------------------------- a run folder from someone else


def test_a_symlinked_heatmaps_folder_out_of_the_run_is_refused_and_nothing_outside_is_touched(capsys, tmp_path):
    from fermap_utils.explanations import write_run_heatmaps

    outside = tmp_path / "outside"
    (outside / "heatmaps_by_cv").mkdir(parents=True)
    (outside / "heatmaps_by_cv" / "keep.txt").write_text("mine")
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"name": "smoke", "networks": ["FER2013"]}))
    (run / "heatmaps").symlink_to(outside)
    before = sorted(str(p.relative_to(outside)) for p in outside.rglob("*"))
    code, _, err = run_cli(capsys, "explain", "--run", run)
    assert_one_line_error(code, err, "heatmaps", "leads out of")
    counts = pd.DataFrame({"network": ["FER2013"], "fold": [1], "expression": ["Anger"], "images": [1]})
    with pytest.raises(FermapError, match="leads out of"):
        write_run_heatmaps(run, counts)
    assert sorted(str(p.relative_to(outside)) for p in outside.rglob("*")) == before
    assert (outside / "heatmaps_by_cv" / "keep.txt").read_text() == "mine"


def test_names_read_from_a_run_stay_inside_it(tiny_run, tmp_path):
    from fermap_utils.data import load_dataset
    from fermap_utils.profiles import read_profile
    from fermap_utils.rundata import load_results

    run = tiny_run
    records = pd.read_csv(run / "data" / "records.csv")
    secret = tmp_path / "secret.png"
    cv2.imwrite(str(secret), np.zeros((8, 8), np.uint8))
    for image in ("../../secret.png", str(secret)):
        crafted = records.copy()
        crafted.loc[0, "image"] = image
        crafted.to_csv(run / "data" / "records.csv", index=False)
        with pytest.raises(FermapError, match="leads out of"):
            load_dataset(run / "data")
    fold = run / "models" / "FER2013" / "fold1"
    fold.mkdir(parents=True)
    (fold / "metrics.json").write_text(json.dumps({"network": "../../../secret", "fold": 1, "input_size": 64}))
    with pytest.raises(FermapError, match="not the registered network"):
        load_results(run)
    (run / "run.json").write_text(json.dumps({"name": "smoke", "networks": ["WeiNet"], "input_size": 10 ** 9}))
    with pytest.raises(FermapError, match=r"run.json: key 'input_size' = 1000000000 is not allowed"):
        read_profile(run)


class _Payload:
    def __init__(self, sentinel: Path):
        self.sentinel = sentinel

    def __reduce__(self):
        return (os.system, (f"touch {self.sentinel}",))


@pytest.mark.parametrize("position", [0, 2, 4])
def test_every_pickle_of_the_lite0_weights_file_is_restricted(tmp_path, position):
    """Each of the five pickles of a legacy torch file is read by the restricted unpickler."""
    from fermap_utils.efficientnet_lite import read_torch_legacy

    sentinel = tmp_path / "pwned"
    parts = [0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}, {}, []]
    parts[position] = _Payload(sentinel)
    path = tmp_path / "w.pth"
    with open(path, "wb") as fh:
        for part in parts:
            pickle.dump(part, fh, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="unexpected object"):
        read_torch_legacy(path)
    assert not sentinel.exists()


def test_inside_refuses_escapes_and_accepts_links_within(tmp_path):
    (tmp_path / "run" / "a").mkdir(parents=True)
    (tmp_path / "run" / "link").symlink_to(tmp_path / "run" / "a")
    assert inside(tmp_path / "run", "link", "x.png") == tmp_path / "run" / "link" / "x.png"
    for bad in ("../x", "/etc/passwd", "a/../../x"):
        with pytest.raises(FermapError, match="leads out of"):
            inside(tmp_path / "run", bad)
    assert remove_stale_temps(tmp_path / "run") == 0


def test_a_run_archive_unpacks_safely(tmp_path, tiny_run):
    import io
    import tarfile

    from fermap_utils.archive import pack_run, unpack_run

    (tiny_run / "run.json").write_text(json.dumps({"name": "smoke", "networks": ["FER2013"]}))
    (tiny_run / ".fermap-tmp.x").write_text("stale")
    archive = pack_run(tiny_run, tmp_path / "run.tar.gz")
    copy = unpack_run(archive, tmp_path / "copy")
    assert sorted(p.name for p in copy.iterdir()) == ["data", "run.json"]
    assert (copy / "data" / "records.csv").read_bytes() == (tiny_run / "data" / "records.csv").read_bytes()
    def crafted(name: str, link: str | None = None) -> Path:
        evil = tmp_path / "evil.tar"
        with tarfile.open(evil, "w") as tar:
            tar.add(tiny_run / "run.json", arcname="run.json")
            info = tarfile.TarInfo(name)
            if link:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
            else:
                info.size = 3
                tar.addfile(info, io.BytesIO(b"bad"))
        return evil

    for evil in (crafted("../escaped.txt"), crafted("heatmaps", str(tmp_path))):
        with pytest.raises(FermapError, match="refused"):
            unpack_run(evil, tmp_path / "victim")
        assert not list((tmp_path / "victim").iterdir())
    assert not (tmp_path / "escaped.txt").exists()
    # An absolute name loses its leading slash: it lands inside the target, never at /tmp.
    absolute = f"{tmp_path}/absolute.txt"
    unpack_run(crafted(absolute), tmp_path / "victim")
    assert not Path(absolute).exists() and (tmp_path / "victim" / absolute.lstrip("/")).is_file()


def test_a_killed_writers_temporary_file_is_removed_and_a_live_ones_kept(tmp_path):
    import h5py

    from fermap_utils import _io

    target = tmp_path / "scores.csv"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f"{_io.TEMP_PREFIX}scores.csv.{int(dead.stdout)}-abcd1234.csv"
    live = tmp_path / f"{_io.TEMP_PREFIX}scores.csv.{os.getpid()}-efgh5678.csv"
    other = tmp_path / f"{_io.TEMP_PREFIX}other.csv.{int(dead.stdout)}-abcd1234.csv"
    for path in (stale, live, other):
        path.write_text("x")
    assert _io.remove_stale_beside(target) == 1
    assert not stale.exists() and live.exists() and other.exists()
    assert _io.user_path(live) == str(target)
    with _io.atomic_paths([target, tmp_path / "w.weights.h5"]) as (csv, h5):  # HDF5 locks what it writes
        csv.write_text("a\n")
        with h5py.File(h5, "w") as f:
            f["x"] = [1]
    assert target.read_text() == "a\n" and (tmp_path / "w.weights.h5").is_file()
