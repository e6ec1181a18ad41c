"""Hostile and careless input, contained: one table of cases, each a command a user could type.

Every case must end with a non-zero exit, exactly one line on stderr (no traceback), nothing written
outside the run folder or ``--out``, and nothing partial at ``--out``. Each case builds what it needs
in ``tmp_path`` (an ``outside`` folder stands for everything a command must not touch) and calls
``cli.main`` in-process. Categories: parameters, files, run folders, trained runs, archives, outputs;
and, as tests of their own, kills (a ``score`` killed with SIGKILL mid-write) and caches (a model
replaced by another valid one is explained again).
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import tarfile
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from fermap_utils import cli, layout
from fermap_utils._io import TEMP_PREFIX
from fermap_utils.config import project_root

AUTHORS = project_root() / "book" / "data" / "authors" / "gray" / "heatmaps_by_cv"


# -- parameters: refused before any work (no dataset, run.json or lock written) --------------------------

def _params(*argv: str):
    def setup(tmp: Path) -> list[str]:
        return [a.replace("RUN", str(tmp / "run")) for a in argv]
    return setup


# -- files a user hands fermap ---------------------------------------------------------------------------

def _datasets_file(text: bytes, manifest: bytes | None = None):
    def setup(tmp: Path) -> list[str]:
        if manifest is not None:
            (tmp / "manifest.csv").write_bytes(manifest)
        (tmp / "datasets.yaml").write_bytes(text)
        return ["data", "build", "--config", str(tmp / "datasets.yaml"), "--out", str(tmp / "run" / "built")]
    return setup


MANIFEST_ENTRY = b"datasets:\n  - name: mine\n    adapter: manifest\n    manifest: manifest.csv\n"


def _built_dataset(tmp: Path, damage) -> list[str]:
    folder = tmp / "run" / "dataset"
    folder.mkdir(parents=True)
    layout.summary_file(folder).write_text(json.dumps({"images": 1}))
    layout.records_file(folder).write_text("id,subject,expression\n")
    damage(folder)
    return ["data", "show", str(folder)]


# -- run folders whose paths lead out --------------------------------------------------------------------

def _run_with_link(name: str):
    def setup(tmp: Path) -> list[str]:
        run = tmp / "run"
        run.mkdir()
        target = tmp / "outside" / name
        target.mkdir(parents=True) if name != "run.json" else target.write_text("{}")
        (run / name).symlink_to(target)
        return ["train", "--profile", "smoke", "--run", str(run)]
    return setup


# -- archives --------------------------------------------------------------------------------------------

def _archive(run_json: dict):
    def setup(tmp: Path) -> list[str]:
        staged = tmp / "staged"
        staged.mkdir()
        (staged / "run.json").write_text(json.dumps(run_json))
        archive = tmp / "run" / "packed.tar.gz"
        archive.parent.mkdir()
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(staged / "run.json", arcname="run.json")
        return ["run", "--unpack", str(archive)]
    return setup


# -- outputs ---------------------------------------------------------------------------------------------

def _colliding_heatmaps(tmp: Path) -> list[str]:
    """The authors' complete folder (which the code before issue 23 scored, exit 0), plus a copy of
    their ``MobileNetV3Large_*`` heatmaps under the Keras name ``MobileNetV3_*``: two sets for one
    network, of which one used to be dropped silently ("scored 12 networks")."""
    folder = tmp / "run" / "heatmaps"
    shutil.copytree(AUTHORS, folder)
    large = sorted(folder.glob("MobileNetV3Large_*"))
    assert len(large) == 30  # 5 folds x 6 expressions: the case is not vacuous
    for source in large:
        (folder / source.name.replace("MobileNetV3Large_", "MobileNetV3_")).write_bytes(source.read_bytes())
    return ["score", "--heatmaps", str(folder), "--out", str(tmp / "run" / "out.csv")]


def _unwritable_mask(tmp: Path) -> list[str]:
    out = tmp / "run" / "masks"
    out.mkdir(parents=True)
    (out / "Fear_gt.png").mkdir()  # a folder where one of the six files must go
    return ["masks", "--out", str(out)]


# -- trained runs whose files were replaced (the run is a copy of the session's trained_run) ------------

PAYLOAD = "pwned"  # the file a payload would create in ``outside``; it must never appear


def _trained(damage):
    """A case on a copy of the trained run (put at ``tmp/run`` by the test), damaged by ``damage``."""
    def setup(tmp: Path) -> list[str]:
        damage(tmp / "run", tmp / "outside" / PAYLOAD)
        return ["explain", "--run", str(tmp / "run")]
    setup.trained = True
    return setup


def _model(run: Path) -> Path:
    return layout.model_file(run, NETWORK, 1)


def _lambda_model(run: Path, payload: Path) -> None:
    """A valid Keras archive whose Lambda layer would create ``payload`` when deserialised."""
    import keras

    # A lambda, not a named function: Keras stores a lambda's bytecode (a named one only by name);
    # the path a constant of that bytecode (Keras cannot load a lambda's default arguments back).
    act = eval(f"lambda x: (open({str(payload)!r}, 'w').close(), x)[1]")  # noqa: S307 (the payload)
    model = keras.Sequential([keras.Input((32, 32, 1)), keras.layers.Lambda(act, output_shape=(32, 32, 1)),
                              keras.layers.Flatten(), keras.layers.Dense(6)])
    payload.unlink(missing_ok=True)  # building the model ran it once, here, on purpose
    _model(run).unlink()
    model.save(_model(run))


class _Payload:
    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return os.system, (f"touch {self.path}",)


def _pickled_model(run: Path, payload: Path) -> None:
    _model(run).write_bytes(pickle.dumps(_Payload(payload)))


def _os_system_config(run: Path, payload: Path) -> None:
    """A Keras archive whose config names ``os.system`` (a function outside Keras) with a shell command."""
    config = {"module": "os", "class_name": "system", "config": f"touch {payload}", "registered_name": "system"}
    with zipfile.ZipFile(_model(run), "w") as z:
        z.writestr("metadata.json", json.dumps({"keras_version": "3.0.0", "date_saved": "2024-01-01@00:00:00"}))
        z.writestr("config.json", json.dumps(config))
        z.writestr("model.weights.h5", b"")


def _foreign_npz(run: Path, payload: Path) -> None:
    """A ``.npz`` fermap did not write, in place of a cached class file."""
    target = sorted((run / "explanations").rglob("*.npz"))[0]
    np.savez(target, something=np.arange(3))


CASES = {
    # parameters
    "score --decimals -3": _params("score", "--heatmaps", str(AUTHORS), "--out", "RUN/t.csv", "--decimals", "-3"),
    "score --decimals 100000": _params("score", "--heatmaps", str(AUTHORS), "--out", "RUN/t.csv",
                                       "--decimals", "100000"),
    "plan -p epochs_scale .nan": _params("plan", "--profile", "smoke", "-p", "epochs_scale", ".nan"),
    "train -p epochs_scale .nan": _params("train", "--profile", "smoke", "--run", "RUN", "-p", "epochs_scale", ".nan"),
    "plan -p explain.kernel_width .nan": _params("plan", "--profile", "smoke", "-p", "explain.kernel_width", ".nan"),
    "train --threads -1": _params("train", "--profile", "smoke", "--run", "RUN", "--threads", "-1"),
    "train --threads 0": _params("train", "--profile", "smoke", "--run", "RUN", "--threads", "0"),
    "train --workers -1": _params("train", "--profile", "smoke", "--run", "RUN", "--workers", "-1"),
    "run --chapters nosuch": _params("run", "--profile", "smoke", "--run", "RUN", "--chapters", "nosuch"),
    # files
    "data build: manifest of random bytes": _datasets_file(MANIFEST_ENTRY, bytes(range(256)) * 4),
    "data build: Latin-1 manifest": _datasets_file(MANIFEST_ENTRY, "path,subject,expression\nÉté.png,s,Anger\n"
                                                   .encode("latin-1")),
    "data build: unknown key in a dataset entry": _datasets_file(MANIFEST_ENTRY + b"    colour: blue\n",
                                                                 b"path,subject,expression\n"),
    "data build: crop_size 100000": _datasets_file(MANIFEST_ENTRY + b"crop_size: 100000\n",
                                                   b"path,subject,expression\n"),
    "data build: datasets file of random bytes": _datasets_file(bytes(range(256))),
    "data show: truncated summary.json": lambda tmp: _built_dataset(
        tmp, lambda f: layout.summary_file(f).write_text('{"images": ')),
    "data show: binary records.csv": lambda tmp: _built_dataset(
        tmp, lambda f: layout.records_file(f).write_bytes(bytes(range(256)) * 8)),
    "data show: no summary.json": lambda tmp: _built_dataset(tmp, lambda f: layout.summary_file(f).unlink()),
    # run folders
    "train: data/ links out of the run": _run_with_link("data"),
    "train: jobs/ links out of the run": _run_with_link("jobs"),
    "train: run.json links out of the run": _run_with_link("run.json"),
    # trained runs
    "explain: model.keras replaced by a model with a Lambda layer": _trained(_lambda_model),
    "explain: model.keras replaced by a pickle": _trained(_pickled_model),
    "explain: model.keras replaced by a config naming os.system": _trained(_os_system_config),
    "explain: a foreign .npz in explanations/": _trained(_foreign_npz),
    # archives
    "unpack: a run named ../../x": _archive({"name": "../../../x", "profile": {"name": "smoke"}}),
    "unpack: a profile off the schema": _archive({"name": "packed", "profile": {"name": "smoke", "networks": "nope"}}),
    # outputs
    "score: MobileNetV3 and MobileNetV3Large heatmaps together": _colliding_heatmaps,
    "masks --out: one target not writable": _unwritable_mask,
}


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


#: The trained run's one network, at 32 px: one fold, one short epoch, LIME with few samples.
NETWORK = "WeiNet"
TRAINED_PROFILE = {"networks": [NETWORK], "input_size": 32, "folds": 1, "epochs_scale": 0.1,
                   "explain": {"images_per_class": 2, "num_samples": 30, "batch_size": 100, "seed": 0}}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_dataset) -> Path:
    """One small trained and explained run per module: random 32 px faces (4 subjects x 6
    expressions, 2 folds) with the standard landmarks, WeiNet trained on fold 1 (synthetic data)."""
    from fermap_utils.explanations import explain_run
    from fermap_utils.profiles import profile, record_profile
    from fermap_utils.training import train_run

    run = tiny_dataset(tmp_path_factory.mktemp("trained") / "run")
    prof = profile("smoke", TRAINED_PROFILE)
    record_profile(run, prof)
    train_run(run, prof, progress=False)
    explain_run(run, prof, progress=False)
    assert layout.model_file(run, NETWORK, 1).is_file() and list((run / "explanations").rglob("*.npz"))
    return run


def _params_of(case: str):
    trained = getattr(CASES[case], "trained", False)
    return pytest.param(case, marks=pytest.mark.slow) if trained else case


def _stamps(root: Path) -> dict[str, int]:
    """Every file under ``root`` and its modification time, the lock and the job records (which
    record the failed job, by design) aside."""
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")
            if p.is_file() and p.name != ".fermap.lock" and p.relative_to(root).parts[0] != "jobs"} \
        if root.exists() else {}


@pytest.mark.parametrize("case", [_params_of(c) for c in CASES])
def test_hostile_input_is_refused_in_one_line(case, tmp_path, capfd, monkeypatch, request):
    monkeypatch.setenv("FERMAP_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outside").mkdir(exist_ok=True)
    if getattr(CASES[case], "trained", False):
        shutil.copytree(request.getfixturevalue("trained_run"), tmp_path / "run", symlinks=True)
        capfd.readouterr()  # what building the run printed (TensorFlow's start-up lines) is not the case's
    argv = CASES[case](tmp_path)
    outside_before = _tree(tmp_path / "outside")
    run_before = _tree(tmp_path / "run")
    stamps_before = _stamps(tmp_path / "run")
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse's own refusals
        code = exc.code
    # a progress bar (tqdm, on stderr; ``explain`` starts one before its job fails) is not a message
    err = "\n".join(line for line in capfd.readouterr().err.replace("\r", "\n").splitlines()
                    if line.strip() and "%|" not in line)
    assert code not in (0, None), f"{case}: accepted"
    assert "Traceback" not in err, f"{case}: {err}"
    assert len(err.splitlines()) == 1, f"{case}: {len(err.splitlines())} lines:\n{err}"
    assert _tree(tmp_path / "outside") == outside_before, f"{case}: wrote outside the run"
    assert not (tmp_path / "outside" / PAYLOAD).exists(), f"{case}: the payload ran"
    if getattr(CASES[case], "trained", False):
        assert str(tmp_path / "run") in err, f"{case}: the message names no path of the user's run: {err}"
    new = _tree(tmp_path / "run") - run_before
    assert not [n for n in new if Path(n).name.startswith(TEMP_PREFIX)], f"{case}: temporary files left: {new}"
    if case.startswith("masks --out"):
        assert not new, f"{case}: partial output {sorted(new)}"
    if getattr(CASES[case], "trained", False):  # the run's lock, taken before reading it; nothing else
        assert new <= {".fermap.lock"}, f"{case}: wrote {sorted(new)}"
        assert _stamps(tmp_path / "run") == stamps_before, f"{case}: changed files of the run"
    elif case.startswith(("score", "plan", "train", "explain", "run --chapters")):
        assert not [n for n in new if n.endswith((".csv", "run.json", ".lock"))], f"{case}: wrote {sorted(new)}"


def test_the_table_covers_every_category():
    words = " ".join(CASES)
    for category in ("-p", "--threads", "--workers", "--decimals", "manifest", "summary.json", "records.csv",
                     "links out", "unpack", "MobileNetV3Large", "masks --out", "Lambda", "pickle", "os.system",
                     "foreign .npz"):
        assert category in words, category
    assert len(CASES) >= 28


# -- kills: a score killed with SIGKILL while it writes --out --------------------------------------------

#: ``fermap score`` in a process of its own, its CSV writer held once the whole table is in the
#: temporary file (the test's hook, in the child only: the product code is unchanged), so the kill
#: lands mid-publication, deterministically.
_HELD_SCORE = textwrap.dedent("""
    import sys, time
    import pandas as pd
    from fermap_utils import cli

    write = pd.DataFrame.to_csv

    def held(self, path, *args, **kwargs):
        write(self, path, *args, **kwargs)
        print(path, flush=True)  # the temporary file, written: the parent kills now
        time.sleep(600)

    pd.DataFrame.to_csv = held
    sys.exit(cli.main(sys.argv[1:]))
""")


@pytest.mark.slow
def test_a_killed_score_publishes_nothing_and_the_next_run_removes_its_temp_file(tmp_path, capfd):
    """kill -9 between writing the table and publishing it: ``--out`` keeps the previous result
    byte for byte (nothing partial is published), the temporary file stays beside it, and the
    next ``fermap score`` to that ``--out`` removes it."""
    out = tmp_path / "run" / "scores.csv"
    argv = ["score", "--heatmaps", str(AUTHORS), "--out", str(out)]
    assert cli.main(argv) == 0
    previous = out.read_bytes()
    env = {**os.environ, "PYTHONPATH": str(project_root())}
    proc = subprocess.Popen([sys.executable, "-c", _HELD_SCORE, *argv, "--decimals", "2"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=env, text=True)
    try:
        written = Path(proc.stdout.readline().strip())
        # the temporary file, seen in the folder (not only announced), before the kill
        deadline = time.monotonic() + 60
        while written.name not in {p.name for p in out.parent.iterdir()} and time.monotonic() < deadline:
            time.sleep(0.05)
        assert written.parent == out.parent and written.name.startswith(f"{TEMP_PREFIX}{out.name}.{proc.pid}-")
        assert written.stat().st_size > 0
    finally:
        proc.kill()
        proc.wait(timeout=60)
        proc.stdout.close()
    assert proc.returncode == -9
    assert out.read_bytes() == previous  # the killed run published nothing
    assert sorted(p.name for p in out.parent.iterdir()) == sorted([out.name, written.name])
    capfd.readouterr()
    assert cli.main([*argv, "--decimals", "2"]) == 0
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # the dead writer's file removed
    assert out.read_bytes() != previous  # and this run's result published


# -- caches: a model replaced by another valid one --------------------------------------------------------

@pytest.mark.slow
def test_explain_recomputes_when_model_keras_is_replaced_by_another_valid_model(trained_run, tmp_path, capfd):
    """The explanations are keyed by the model's content: the same network, its weights perturbed
    and saved over ``model.keras`` (metrics.json unchanged), is explained again, not served from
    the cache of the model it replaced."""
    import keras

    run = Path(shutil.copytree(trained_run, tmp_path / "run", symlinks=True))
    files = sorted((run / "explanations").rglob("*.npz"))

    def keys() -> dict[str, str]:
        return {str(f.relative_to(run)): str(np.load(f)["key"]) for f in files}

    cached = keys()
    assert cli.main(["explain", "--run", str(run)]) == 0  # unchanged: every class served from the cache
    assert keys() == cached
    model = keras.models.load_model(_model(run), compile=False, safe_mode=True)
    rng = np.random.default_rng(1)
    model.set_weights([w + rng.normal(0, 0.1, w.shape).astype(w.dtype) for w in model.get_weights()])
    model.save(_model(run))
    capfd.readouterr()
    assert cli.main(["explain", "--run", str(run)]) == 0
    again = keys()
    assert set(again) == set(cached) and all(again[f] != cached[f] for f in cached), (cached, again)
