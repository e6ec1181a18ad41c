"""Datasets: adapters for the paper's five datasets, preprocessing, subject-grouped folds.

Every adapter reads a dataset's own layout and yields :class:`Record` s. The
preprocessing (:func:`align_face`) levels the eyes, crops and resizes, keeping the
landmarks in the crop's coordinates. :func:`build_dataset` runs it over all
records, never stopping on a bad file, and writes a report of what it skipped.
"""
from __future__ import annotations

import csv
import inspect
import io
import json
import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import tqdm.auto  # looked up at call time, so a book chapter can silence it

from ._io import (
    TEMP_PREFIX,
    _umask,
    atomic_path,
    atomic_paths,
    check_output,
    inside,
    read_csv,
    read_gray,
    read_json,
    read_text,
    read_yaml,
    write_gray,
)
from .config import section
from .errors import FermapError, NoFaceError
from .landmarks import STANDARD_FACE_BOX, detect_landmarks, mean_shape
from .layout import images_dir, landmarks_file, records_file, skipped_file, summary_file
from .warping import resize_images  # noqa: F401  (the dataset's API: data.resize_images)


@dataclass
class Record:
    """One labelled face image of a dataset."""

    path: str
    subject: str
    dataset: str
    expression: str
    # The landmarks, or the file holding them: a file is read at preprocessing, where a bad
    # one skips this record instead of stopping the build.
    landmarks: np.ndarray | str | None = field(default=None, repr=False)


@dataclass
class Dropped:
    """A file an adapter read but did not keep (a label outside the six, say), with the reason."""

    path: str
    reason: str


def data_config() -> dict:
    """The ``data`` section of fermap's configuration."""
    return section("data")


@lru_cache(maxsize=1)
def _alias_table() -> dict[str, str]:
    return {a.lower(): name for name, aliases in data_config()["expression_aliases"].items()
            for a in [name, *aliases]}


def normalise_expression(label: str) -> str | None:
    """The paper's name for an expression label, or None when it is not one of the six."""
    return _alias_table().get(str(label).strip().lower())


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in data_config()["image_suffixes"]


def read_landmarks_txt(path: str | os.PathLike) -> np.ndarray:
    """68 landmarks from a text file of 68 ``x y`` lines (CK+'s format)."""
    if not Path(path).is_file():
        raise FermapError(f"{path}: landmarks file not found")
    try:
        values = np.loadtxt(path, dtype=np.float64, ndmin=2)
        values = values.reshape(-1, 2)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise FermapError(f"{path}: unreadable landmarks file ({str(exc).splitlines()[0][:80]})") from None
    if values.shape != (68, 2):
        raise FermapError(f"{path}: expected 68 landmarks, found {len(values)}")
    check_landmarks(values, path)
    return values


def check_landmarks(marks: np.ndarray, where: str | os.PathLike) -> np.ndarray:
    """Refuse, in one line naming ``where``, landmarks a face cannot have: not finite, or all
    at (nearly) one point (an all-zero file), which no crop can be fitted to."""
    marks = np.asarray(marks, dtype=np.float64)
    if not np.isfinite(marks).all():
        bad = int((~np.isfinite(marks)).any(axis=-1).sum())
        raise FermapError(f"{where}: {bad} of {len(marks)} landmarks are not finite numbers (NaN or infinite)")
    if np.ptp(marks, axis=0).min() < 1:
        raise FermapError(f"{where}: the {len(marks)} landmarks lie on one point or line (all zero?); "
                          "no face can be fitted to them")
    return marks


def _require(root: Path, expected: str) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise FermapError(f"{root}: no such folder (expected {expected})")
    return root


# ---------------------------------------------------------------- adapters


def read_ckplus(root: str | os.PathLike, dataset: str = "CK+") -> Iterator[Record | Dropped]:
    """CK+: the peak (labelled) frame of each sequence.

    Layout: ``cohn-kanade-images/Sxxx/nnn/*.png`` with labels in
    ``Emotion/Sxxx/nnn/*_emotion.txt`` (codes 0-7) and, when present, landmarks in
    ``Landmarks/Sxxx/nnn/*_landmarks.txt``. Neutral and contempt are dropped.
    """
    expected = "cohn-kanade-images/Sxxx/nnn/*.png and Emotion/Sxxx/nnn/*_emotion.txt"
    root = _require(Path(root), expected)
    images, emotions = root / "cohn-kanade-images", root / "Emotion"
    if not images.is_dir() or not emotions.is_dir():
        raise FermapError(f"{root}: not a CK+ folder, expected {expected} under it")
    codes = {int(k): v for k, v in data_config()["ckplus_codes"].items()}
    label_files = sorted(emotions.glob("S*/*/*_emotion.txt"))
    if not label_files:
        raise FermapError(f"{emotions}: no label files, expected Emotion/Sxxx/nnn/*_emotion.txt")
    for label in label_files:
        subject, sequence = label.parent.parent.name, label.parent.name
        frame = label.name[: -len("_emotion.txt")]
        image = images / subject / sequence / f"{frame}.png"
        try:
            code = int(round(float(label.read_text().split()[0])))
        except (ValueError, IndexError):
            yield Dropped(str(label), "unreadable CK+ label")
            continue
        if code not in codes:
            yield Dropped(str(image), f"label not among the six (CK+ code {code})")
            continue
        marks = root / "Landmarks" / subject / sequence / f"{frame}_landmarks.txt"
        yield Record(str(image), subject, dataset, codes[code], str(marks) if marks.is_file() else None)


_JAFFE = re.compile(r"^(?P<subject>[A-Z]{2})\.(?P<code>[A-Z]{2})\d*\.\d+\.tiff?$", re.IGNORECASE)


def read_jaffe(root: str | os.PathLike, dataset: str = "JAFFE") -> Iterator[Record | Dropped]:
    """JAFFE: files named like ``KA.AN1.39.tiff`` (subject, expression code); NE is dropped."""
    root = _require(Path(root), "JAFFE images named like KA.AN1.39.tiff")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".tiff", ".tif"))
    matched = 0
    for path in files:
        m = _JAFFE.match(path.name)
        if not m:
            continue
        matched += 1
        expr = normalise_expression(m["code"])
        if expr is None:
            yield Dropped(str(path), f"label not among the six (JAFFE code {m['code']})")
        else:
            yield Record(str(path), m["subject"].upper(), dataset, expr)
    if matched == 0:
        raise FermapError(f"{root}: no JAFFE images, expected files named like KA.AN1.39.tiff")


_BU_SUBJECT = re.compile(r"^[FM]\d{3}$")


def read_bu4dfe(root: str | os.PathLike, dataset: str = "BU-4DFE", apex_frames: int = 1) -> Iterator[Record | Dropped]:
    """BU-4DFE: subject folders ``F001``/``M001`` with one 2-D frame sequence per expression.

    The sequences go neutral -> apex -> neutral; the ``apex_frames`` frames at the
    middle of each sequence are taken.
    """
    expected = "subject folders F001.../M001... holding one folder of frames per expression"
    root = _require(Path(root), expected)
    subjects = sorted(p for p in root.iterdir() if p.is_dir() and _BU_SUBJECT.match(p.name))
    if not subjects:
        raise FermapError(f"{root}: no BU-4DFE subject folders, expected {expected}")
    for subject in subjects:
        for seq in sorted(p for p in subject.iterdir() if p.is_dir()):
            expr = normalise_expression(seq.name)
            frames = sorted(p for p in seq.iterdir() if _is_image(p))
            if expr is None:
                yield Dropped(str(seq), f"label not among the six (BU-4DFE folder {seq.name})")
                continue
            if not frames:
                yield Dropped(str(seq), "empty sequence")
                continue
            mid = len(frames) // 2
            lo = max(0, mid - apex_frames // 2)
            for frame in frames[lo: lo + apex_frames]:
                yield Record(str(frame), subject.name, dataset, expr)


def read_folders(root: str | os.PathLike, dataset: str) -> Iterator[Record | Dropped]:
    """Any dataset laid out as ``root/<subject>/<expression>/*`` (WSEFEP, FEGA, ...)."""
    expected = "root/<subject>/<expression>/<image files>"
    root = _require(Path(root), expected)
    found = False
    for subject in sorted(p for p in root.iterdir() if p.is_dir()):
        for folder in sorted(p for p in subject.iterdir() if p.is_dir()):
            expr = normalise_expression(folder.name)
            for path in sorted(p for p in folder.iterdir() if _is_image(p)):
                found = True
                if expr is None:
                    yield Dropped(str(path), f"label not among the six (folder {folder.name})")
                else:
                    yield Record(str(path), subject.name, dataset, expr)
    if not found:
        raise FermapError(f"{root}: no images found, expected {expected}")


def read_manifest(manifest: str | os.PathLike, dataset: str | None = None) -> Iterator[Record | Dropped]:
    """A CSV manifest with columns ``path,subject,expression[,dataset][,landmarks]``.

    Paths are relative to the manifest's folder; ``landmarks`` names a text file of 68 ``x y`` lines.
    """
    manifest = Path(manifest)
    if not manifest.is_file():
        raise FermapError(f"{manifest}: no such manifest (expected a CSV with path,subject,expression[,dataset])")
    text = read_text(manifest, "manifest (CSV text)")  # binary or not UTF-8: one line, not a traceback
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = {"path", "subject", "expression"} - set(reader.fieldnames or [])
    if missing:
        raise FermapError(f"{manifest}: missing column(s) {', '.join(sorted(missing))}; "
                          "expected path,subject,expression[,dataset]")
    for row in reader:
        path = manifest.parent / row["path"]
        expr = normalise_expression(row["expression"])
        if expr is None:
            yield Dropped(str(path), f"label not among the six ({row['expression']})")
            continue
        marks = row.get("landmarks")
        yield Record(str(path), str(row["subject"]), row.get("dataset") or dataset or manifest.stem, expr,
                     str(manifest.parent / marks) if marks else None)


ADAPTERS = {"ckplus": read_ckplus, "jaffe": read_jaffe, "bu4dfe": read_bu4dfe,
            "folders": read_folders, "manifest": read_manifest}


def split_records(items: Iterable[Record | Dropped]) -> tuple[list[Record], list[Dropped]]:
    """Separate an adapter's output into the records kept and the files dropped."""
    records, dropped = [], []
    for item in items:
        (records if isinstance(item, Record) else dropped).append(item)
    return records, dropped


def read_datasets(specs: list[dict]) -> tuple[list[Record], list[Dropped]]:
    """Read every dataset of a config's ``datasets`` list.

    Each entry names an ``adapter`` (one of :data:`ADAPTERS`), a ``name`` and a
    ``root`` (or ``manifest``); other keys go to the adapter.
    """
    records, dropped = [], []
    for spec in specs:
        spec = dict(spec)
        adapter = spec.pop("adapter", None)
        if adapter not in ADAPTERS:
            raise FermapError(f"dataset {spec.get('name', '?')}: adapter must be one of "
                              f"{', '.join(ADAPTERS)}, got {adapter!r}")
        location = spec.pop("manifest", None) or spec.pop("root", None)
        if location is None:
            raise FermapError(f"dataset {spec.get('name', adapter)}: give its 'root' (or 'manifest')")
        name = spec.pop("name", None)
        accepted = set(inspect.signature(ADAPTERS[adapter]).parameters) - {"root", "manifest", "dataset"}
        unknown = sorted(set(map(str, spec)) - accepted)
        if unknown:
            raise FermapError(f"dataset {name or adapter}: unknown key(s) {', '.join(unknown)} "
                              f"for adapter {adapter!r}; "
                              f"it takes name, adapter, root or manifest{''.join(', ' + a for a in sorted(accepted))}")
        kwargs = dict(spec, **({"dataset": name} if name else {}))
        kept, lost = split_records(ADAPTERS[adapter](location, **kwargs))
        records += kept
        dropped += lost
    return records, dropped


# ---------------------------------------------------------------- preprocessing


def eye_angle(landmarks: np.ndarray) -> float:
    """Angle of the line between the eye centres, degrees (positive: the right eye is lower)."""
    left, right = landmarks[36:42].mean(axis=0), landmarks[42:48].mean(axis=0)
    return float(np.degrees(np.arctan2(right[1] - left[1], right[0] - left[0])))


def face_box_transform(landmarks: np.ndarray) -> tuple[np.ndarray, float]:
    """Where the standard face box lies on this face: its centre (x, y) and side length, in image pixels."""
    ref = mean_shape()
    left, top, right, bottom = STANDARD_FACE_BOX
    matrix, _ = cv2.estimateAffinePartial2D(ref.astype(np.float32), landmarks.astype(np.float32))
    if matrix is None:
        raise FermapError("could not fit the standard face to these landmarks")
    scale = float(np.hypot(matrix[0, 0], matrix[1, 0]))
    centre = matrix @ np.array([(left + right) / 2, (top + bottom) / 2, 1.0])
    return centre, scale * ((right - left) + (bottom - top)) / 2


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Level the eyes, crop the face box and resize to ``size`` x ``size`` grey.

    The crop is the square the standard face box (the authors' 224x250 face
    rectangle) covers on this face; parts outside the image repeat its border.

    Returns
    -------
    crop : (size, size) uint8
    landmarks : (68, 2) float64, in the crop's coordinates
    """
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    if gray.dtype != np.uint8:
        gray = np.clip(gray * (255.0 if gray.max() <= 1 else 1.0), 0, 255).astype(np.uint8)
    centre, side = face_box_transform(landmarks)
    rot = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), eye_angle(landmarks), size / side)
    rot[:, 2] += np.array([size / 2, size / 2]) - centre
    crop = cv2.warpAffine(gray, rot, (size, size), flags=cv2.INTER_AREA if side > size else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
    marks = np.c_[landmarks, np.ones(len(landmarks))] @ rot.T
    return crop, marks


def preprocess_record(record: Record, size: int, align: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Read, find the landmarks (given, or detected with dlib) and align one record.

    With ``align=False`` the image is taken as an already aligned ``size`` x ``size``
    crop with its given landmarks (the synthetic default, cropped from its neutral face).
    """
    image = read_gray(record.path, convert_16bit=True)
    marks = record.landmarks
    if isinstance(marks, (str, os.PathLike)):
        marks = read_landmarks_txt(marks)
    if not align:
        if marks is None or image.shape != (size, size):
            raise FermapError(f"{record.path}: an aligned record needs landmarks and a {size}x{size} image")
        return image, np.asarray(marks, np.float64)
    if marks is None:
        marks = detect_landmarks(image, name=record.path)
    return align_face(image, check_landmarks(marks, record.landmarks or record.path), size)


# ---------------------------------------------------------------- folds


def check_folds(subjects: int, folds: int, where: str | os.PathLike) -> None:
    """Refuse, in one line, more folds than subjects: a fold would have no test subject."""
    if int(folds) > subjects:
        raise FermapError(f"{where}: {folds} folds but only {subjects} subject(s) with usable images; "
                          f"set 'folds' to at most {subjects}")


def subject_folds(subjects: Iterable[str], datasets: Iterable[str], k: int | None = None,
                  seed: int = 0) -> np.ndarray:
    """Subject-grouped folds, balanced per dataset.

    The subjects of each dataset are shuffled and dealt to the ``k`` folds in
    turn (by default ``config.yaml``'s ``data.folds``, the paper's), so a subject
    never spans two folds and every fold holds about the same share of every
    dataset. Returns the fold (1..k) of each row.
    """
    k = int(section("data")["folds"]) if k is None else int(k)
    subjects = np.asarray(list(subjects), dtype=object)
    datasets = np.asarray(list(datasets), dtype=object)
    rng = np.random.default_rng(seed)
    fold_of: dict[tuple[str, str], int] = {}
    offset = 0
    for ds in sorted(set(datasets)):
        ids = sorted(set(subjects[datasets == ds]))
        rng.shuffle(ids)
        for i, s in enumerate(ids):
            fold_of[(ds, s)] = (i + offset) % k + 1
        offset += len(ids)  # the next dataset starts where this one stopped: folds stay even
    return np.array([fold_of[(d, s)] for d, s in zip(datasets, subjects)], dtype=int)


# ---------------------------------------------------------------- build and load


def build_dataset(
    records: list[Record],
    out: str | os.PathLike,
    dropped: list[Dropped] = (),
    size: int | None = None,
    folds: int | None = None,
    seed: int | None = None,
    synthetic: bool = False,
    description: str = "",
    progress: bool = True,
    align: bool = True,
) -> dict:
    """Preprocess records into ``out``: crops, landmarks, folds and a report.

    Writes ``images/*.png``, ``records.csv`` (one row per kept image, with its
    fold), ``landmarks.npy`` (N, 68, 2), ``skipped.csv`` (path, reason) and
    ``summary.json`` (counts read, used and skipped by reason). A file that
    cannot be read or has no detectable face (or a bad landmarks file) is skipped
    and reported; nothing stops the run. The new images are written to a temporary
    folder and replace the old ones (a rebuild leaves no stale image) only once
    every file is ready: a failed build leaves the folder as it was.
    """
    cfg = data_config()
    size = size or cfg["crop_size"]
    asked = folds  # a fold count asked for must be filled; the default's may leave a tiny set's folds empty
    folds = folds or cfg["folds"]
    seed = cfg["seed"] if seed is None else seed
    out = check_output(out, folder=True)
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}images.", dir=out))
    try:
        return _build_into(records, out, staging, dropped, size, folds, seed, synthetic, description, progress,
                           align, bool(asked))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _build_into(records, out: Path, staging: Path, dropped, size, folds, seed, synthetic, description,
                progress, align: bool, check: bool = False) -> dict:

    rows, marks = [], []
    skipped = [{"path": d.path, "reason": d.reason} for d in dropped]
    for record in tqdm.auto.tqdm(records, desc="preprocessing", unit="img", disable=not progress):
        try:
            crop, lm = preprocess_record(record, size, align)
        except NoFaceError:
            skipped.append({"path": record.path, "reason": "no face detected"})
            continue
        except FermapError as exc:
            reason = str(exc).split(": ", 1)[-1]
            skipped.append({"path": record.path, "reason": reason})
            continue
        except Exception as exc:  # one bad file never stops a run
            skipped.append({"path": record.path, "reason": f"{type(exc).__name__}: {exc}"})
            continue
        name = f"images/{len(rows):05d}.png"
        write_gray(staging / Path(name).name, crop)
        rows.append({"image": name, "source": record.path, "subject": record.subject,
                     "dataset": record.dataset, "expression": record.expression})
        marks.append(lm)
    skip_table = pd.DataFrame(skipped, columns=["path", "reason"])
    if not rows:
        with atomic_path(out / "skipped.csv") as tmp:
            skip_table.to_csv(tmp, index=False)
        reasons = "; ".join(f"{n} x {r}" for r, n in Counter(s["reason"] for s in skipped).most_common(3))
        raise FermapError(f"{out}: no image could be used ({len(skipped)} skipped: {reasons or 'no records'}); "
                          f"every file and its reason in {out / 'skipped.csv'}")
    table = pd.DataFrame(rows)
    if check:
        check_folds(len(table.groupby(["dataset", "subject"])), folds, out)
    table.insert(0, "id", np.arange(len(table)))
    table["fold"] = subject_folds(table.subject, table.dataset, folds, seed)
    summary = {
        "description": description,
        "synthetic": synthetic,
        "crop_size": size,
        "folds": folds,
        "seed": seed,
        "read": len(records) + len(dropped),
        "used": len(table),
        "skipped": dict(Counter(s["reason"] for s in skipped)),
        "subjects": int(table.subject.nunique()),
        "by_dataset": table.dataset.value_counts().sort_index().to_dict(),
        "by_expression": table.expression.value_counts().sort_index().to_dict(),
        "by_fold": {str(k): int(v) for k, v in table.fold.value_counts().sort_index().items()},
    }
    paths = (landmarks_file(out), records_file(out), skipped_file(out), summary_file(out))
    with atomic_paths(list(paths)) as (t_marks, t_records, t_skipped, t_summary):
        with open(t_marks, "wb") as fh:
            np.save(fh, np.asarray(marks, dtype=np.float32))
        table.to_csv(t_records, index=False)
        skip_table.to_csv(t_skipped, index=False)
        t_summary.write_text(json.dumps(summary, indent=2))
        # Last before the files move: the old images go, the new ones take their place.
        images = images_dir(out)
        if images.is_symlink() or images.is_file():
            images.unlink()
        elif images.exists():
            shutil.rmtree(images)
        staging.rename(images)
        os.chmod(images, 0o777 & ~_umask())
    return summary


@dataclass
class Dataset:
    """A preprocessed dataset in memory."""

    images: np.ndarray  # (N, size, size) uint8
    landmarks: np.ndarray  # (N, 68, 2) float32, in the images' coordinates
    table: pd.DataFrame  # id, image, source, subject, dataset, expression, fold
    summary: dict


def scale_landmarks(landmarks: np.ndarray, from_size: int, to_size: int) -> np.ndarray:
    """Landmarks of a square image resized from ``from_size`` to ``to_size`` (pixel centres kept aligned)."""
    if from_size == to_size:
        return landmarks
    return ((np.asarray(landmarks) + 0.5) * (to_size / from_size) - 0.5).astype(np.float32)


def load_dataset(directory: str | os.PathLike, size: int | None = None) -> Dataset:
    """Load what :func:`build_dataset` wrote, optionally resized to ``size`` (landmarks scaled with it)."""
    directory = Path(directory)
    for path in (records_file(directory), landmarks_file(directory), summary_file(directory)):
        if not path.is_file():
            raise FermapError(f"{directory}: not a fermap dataset (no {path.name}); build one with `fermap data build`")
    table = read_csv(records_file(directory), "records table", ("id", "image"), dtype={"subject": str})
    summary = read_summary(directory, keys=())
    try:
        marks = np.load(landmarks_file(directory), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise FermapError(f"{landmarks_file(directory)}: not a landmarks array "
                          f"({str(exc).splitlines()[0][:80]})") from None
    if marks.ndim != 3 or marks.shape[1:] != (68, 2) or len(marks) != len(table):
        raise FermapError(f"{landmarks_file(directory)}: expected {len(table)} x 68 x 2 landmarks, found "
                          f"{' x '.join(map(str, marks.shape))}")
    # A dataset folder may come from someone else: every image it names must lie inside it.
    images = np.stack([read_gray(inside(directory, p)) for p in table.image])
    if size and size != images.shape[1]:
        marks = scale_landmarks(marks, images.shape[1], size)
        images = resize_images(images, size)
    return Dataset(images, marks, table, summary)


#: The columns every ``records.csv`` has.
RECORD_COLUMNS = ("id", "image", "subject", "dataset", "expression", "fold")
#: The keys every ``summary.json`` has.
SUMMARY_KEYS = ("read", "used", "folds", "crop_size", "by_fold", "skipped")


def read_summary(directory: str | os.PathLike, keys: tuple[str, ...] = SUMMARY_KEYS) -> dict:
    """A built dataset's ``summary.json``, or one line naming it and what is wrong (unreadable,
    truncated, or without the keys fermap writes)."""
    path = summary_file(directory)
    summary = read_json(path, "dataset summary")
    if not isinstance(summary, dict):
        raise FermapError(f"{path}: not a fermap dataset summary (not a mapping)")
    missing = [k for k in keys if k not in summary]
    if missing:
        raise FermapError(f"{path}: not a fermap dataset summary (no {', '.join(missing)})")
    return summary


def describe_dataset(directory: str | os.PathLike) -> str:
    """A text report of a built dataset: counts per dataset, subject, expression and fold, and the skips."""
    directory = Path(directory)
    for path in (records_file(directory), summary_file(directory)):
        if not path.is_file():
            raise FermapError(f"{directory}: not a fermap dataset (no {path.name}); build one with `fermap data build`")
    t = read_csv(records_file(directory), "records table", RECORD_COLUMNS, dtype={"subject": str})
    s = read_summary(directory)
    lines = [f"{directory}: {s['used']} images used of {s['read']} read"
             + (" (SYNTHETIC: FACS-driven expressions on real neutral faces)" if s.get("synthetic") else ""),
             f"  {t.subject.nunique()} subjects, {t.dataset.nunique()} dataset(s), {s['folds']} folds, "
             f"crops {s['crop_size']}x{s['crop_size']}"]
    lines.append("  per dataset and expression:")
    counts = pd.crosstab(t.dataset, t.expression, margins=True, margins_name="total")
    lines += ["    " + line for line in counts.to_string().splitlines()]
    lines.append("  per fold: " + ", ".join(f"{k}: {v}" for k, v in s["by_fold"].items()))
    per_subject = t.groupby("subject").size()
    lines.append(f"  images per subject: min {per_subject.min()}, median {int(per_subject.median())}, "
                 f"max {per_subject.max()}")
    if s["skipped"]:
        lines.append("  skipped: " + ", ".join(f"{n} x {r}" for r, n in sorted(s["skipped"].items())))
        lines.append(f"  (paths and reasons in {directory / 'skipped.csv'})")
    else:
        lines.append("  skipped: none")
    return "\n".join(lines)


#: The numeric keys of a datasets file and their bounds: crops from 16 to 1024 pixels (the networks'
#: input sizes), 2 to 100 folds (never more than the subjects: checked once they are known), a seed.
DATASET_BOUNDS = {"crop_size": (16, 1024), "folds": (2, 100), "seed": (0, 2**31 - 1)}


def build_from_config(config_path: str | os.PathLike, out: str | os.PathLike, progress: bool = True) -> dict:
    """``fermap data build --config FILE``: read the datasets a YAML file names and preprocess them.

    The file holds ``datasets`` (a list of ``{name, adapter, root|manifest, ...}``)
    and optionally ``crop_size``, ``folds`` and ``seed``. Relative paths are taken
    from the file's folder. See ``book/datasets.example.yaml``.
    """
    config_path = Path(config_path)
    cfg = read_yaml(config_path, "datasets file")
    specs = cfg.get("datasets")
    if not specs or not isinstance(specs, list):
        raise FermapError(f"{config_path}: no 'datasets' list (each entry: name, adapter, root or manifest)")
    for key, (low, high) in DATASET_BOUNDS.items():
        value = cfg.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high):
            raise FermapError(f"{config_path}: key {key!r} = {value!r} is not allowed; expected an integer "
                              f"from {low} to {high}")
    unknown = sorted(set(map(str, cfg)) - {"datasets", *DATASET_BOUNDS})
    if unknown:
        raise FermapError(f"{config_path}: unknown key(s) {', '.join(unknown)}; "
                          f"expected datasets, {', '.join(DATASET_BOUNDS)}")
    resolved = []
    for i, spec in enumerate(specs):
        if not isinstance(spec, dict):
            raise FermapError(f"{config_path}: datasets entry {i + 1} = {spec!r} is not allowed; "
                              "expected a mapping with name, adapter, root or manifest")
        spec = dict(spec)
        for key in ("root", "manifest"):
            if key in spec and not isinstance(spec[key], str):
                raise FermapError(f"{config_path}: datasets entry {i + 1}: {key} = {spec[key]!r}; expected a path")
        for key in ("root", "manifest"):
            if key in spec:
                spec[key] = str((config_path.parent / os.path.expanduser(spec[key])).resolve())
        resolved.append(spec)
    records, dropped = read_datasets(resolved)
    if cfg.get("folds"):  # asked for: refused before any image is read when the subjects cannot fill them
        check_folds(len({(r.dataset, r.subject) for r in records}), cfg["folds"], config_path)
    names = ", ".join(sorted({r.dataset for r in records}))
    return build_dataset(records, out, dropped, size=cfg.get("crop_size"), folds=cfg.get("folds"),
                         seed=cfg.get("seed"), progress=progress, description=f"datasets: {names} ({config_path.name})")
