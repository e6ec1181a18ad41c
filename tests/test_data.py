"""Dataset adapters on fake trees that mimic each official layout, preprocessing, folds."""
import cv2
import numpy as np
import pandas as pd
import pytest

from fermap_utils import data as D
from fermap_utils.errors import FermapError


@pytest.fixture(scope="module")
def face_png(tmp_path_factory):
    """A real face (the astronaut's) as a PNG, to put into the fake trees."""
    from skimage import data as skdata

    path = tmp_path_factory.mktemp("img") / "face.png"
    cv2.imwrite(str(path), cv2.cvtColor(skdata.astronaut()[0:300, 100:380], cv2.COLOR_RGB2GRAY))
    return path.read_bytes()


def _records(items):
    items = list(items)
    return [i for i in items if isinstance(i, D.Record)], [i for i in items if isinstance(i, D.Dropped)]


def test_ckplus(tmp_path, face_png):
    for subj, seq, code, frames in [("S005", "001", 3, 4), ("S010", "002", 0, 3), ("S010", "004", 2, 3),
                                    ("S011", "001", 7, 5)]:
        for f in range(1, frames + 1):
            img = tmp_path / "cohn-kanade-images" / subj / seq / f"{subj}_{seq}_{f:08d}.png"
            img.parent.mkdir(parents=True, exist_ok=True)
            img.write_bytes(face_png)
        label = tmp_path / "Emotion" / subj / seq / f"{subj}_{seq}_{frames:08d}_emotion.txt"
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text(f"   {code:.7e}\n")
    marks = tmp_path / "Landmarks" / "S005" / "001" / "S005_001_00000004_landmarks.txt"
    marks.parent.mkdir(parents=True)
    np.savetxt(marks, np.arange(136).reshape(68, 2), fmt="   %.7e")
    kept, dropped = _records(D.read_ckplus(tmp_path))
    assert [(r.subject, r.expression, r.path.endswith(f"_{n:08d}.png")) for r, n in zip(kept, (4, 5))] == \
        [("S005", "Disgust", True), ("S011", "Surprise", True)]  # the peak (labelled) frame
    assert D.read_landmarks_txt(kept[0].landmarks).shape == (68, 2) and kept[1].landmarks is None
    assert sorted(d.reason for d in dropped) == ["label not among the six (CK+ code 0)",
                                                 "label not among the six (CK+ code 2)"]


def test_ckplus_wrong_layout(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(FermapError, match="expected cohn-kanade-images/Sxxx/nnn"):
        list(D.read_ckplus(tmp_path))


def test_jaffe(tmp_path, face_png):
    for name in ("KA.AN1.39.tiff", "KA.NE2.27.tiff", "YM.HA3.54.tiff", "KM.SU1.14.tiff", "README.txt"):
        (tmp_path / name).write_bytes(face_png)
    kept, dropped = _records(D.read_jaffe(tmp_path))
    assert {(r.subject, r.expression) for r in kept} == {("KA", "Anger"), ("YM", "Happiness"), ("KM", "Surprise")}
    assert [d.reason for d in dropped] == ["label not among the six (JAFFE code NE)"]
    with pytest.raises(FermapError, match="KA.AN1.39.tiff"):
        list(D.read_jaffe(tmp_path / "README.txt" if False else _empty(tmp_path)))


def _empty(tmp_path):
    p = tmp_path / "empty"
    p.mkdir()
    return p


def test_bu4dfe_takes_the_apex(tmp_path, face_png):
    for subj in ("F001", "M002"):
        for expr, n in (("Angry", 9), ("Happy", 7), ("Neutral", 3)):
            for f in range(n):
                p = tmp_path / subj / expr / f"{f:03d}.jpg"
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(face_png)
    kept, dropped = _records(D.read_bu4dfe(tmp_path, apex_frames=3))
    angry = [r for r in kept if r.subject == "F001" and r.expression == "Anger"]
    assert [r.path[-7:] for r in angry] == ["003.jpg", "004.jpg", "005.jpg"]  # the middle of 9 frames
    assert len(kept) == 2 * 2 * 3 and len(dropped) == 2
    with pytest.raises(FermapError, match="F001.../M001"):
        list(D.read_bu4dfe(_empty(tmp_path)))


def test_folders_and_manifest(tmp_path, face_png):
    for subj in ("p01", "p02"):
        for expr in ("happy", "Sad", "neutral"):
            p = tmp_path / "wsefep" / subj / expr / "a.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(face_png)
    kept, dropped = _records(D.read_folders(tmp_path / "wsefep", "WSEFEP"))
    assert {(r.subject, r.expression, r.dataset) for r in kept} == {
        (s, e, "WSEFEP") for s in ("p01", "p02") for e in ("Happiness", "Sadness")}
    assert len(dropped) == 2
    (tmp_path / "m.csv").write_text("path,subject,expression\nwsefep/p01/happy/a.png,7,HA\n"
                                    "wsefep/p02/Sad/a.png,8,contempt\n")
    kept, dropped = _records(D.read_manifest(tmp_path / "m.csv", "FEGA"))
    assert [(r.subject, r.expression, r.dataset) for r in kept] == [("7", "Happiness", "FEGA")]
    (tmp_path / "bad.csv").write_text("file,who\n")
    with pytest.raises(FermapError, match="missing column"):
        list(D.read_manifest(tmp_path / "bad.csv"))


def test_build_skips_bad_files_and_reports_them(tmp_path, face_png):
    root = tmp_path / "set"
    for subj in ("a", "b", "c"):
        p = root / subj / "happy" / "ok.png"
        p.parent.mkdir(parents=True)
        p.write_bytes(face_png)
    (root / "a" / "happy" / "broken.png").write_bytes(b"not an image")
    cv2.imwrite(str(root / "b" / "happy" / "blank.png"), np.full((200, 200), 128, np.uint8))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("datasets:\n  - {name: Mine, adapter: folders, root: set}\nfolds: 3\ncrop_size: 96\n")
    summary = D.build_from_config(cfg, tmp_path / "out", progress=False)
    assert summary["read"] == 5 and summary["used"] == 3
    assert summary["skipped"] == {"not a readable image": 1, "no face detected": 1}
    skipped = pd.read_csv(tmp_path / "out" / "skipped.csv")
    assert sorted(skipped.path.str.rsplit("/", n=1).str[-1]) == ["blank.png", "broken.png"]
    ds = D.load_dataset(tmp_path / "out", size=64)
    assert ds.images.shape == (3, 64, 64) and ds.landmarks.shape == (3, 68, 2)
    # eyes level after alignment, and inside the crop
    left, right = ds.landmarks[:, 36:42].mean(1), ds.landmarks[:, 42:48].mean(1)
    assert np.all(np.abs(left[:, 1] - right[:, 1]) < 1.0)
    inner = ds.landmarks[:, 17:]  # brows, eyes, nose, mouth: inside; the jaw may graze the edge
    assert np.all((inner >= 0) & (inner < 64))
    assert np.all((ds.landmarks > -0.1 * 64) & (ds.landmarks < 1.1 * 64))
    assert "skipped: 1 x no face detected, 1 x not a readable image" in D.describe_dataset(tmp_path / "out")


def test_align_face_levels_the_eyes(astronaut_face):
    gray, lm = astronaut_face
    rot = cv2.getRotationMatrix2D((256, 256), 20, 1.0)
    tilted = cv2.warpAffine(gray, rot, (512, 512))
    tilted_lm = np.c_[lm, np.ones(68)] @ rot.T
    assert abs(D.eye_angle(tilted_lm)) > 15
    crop, marks = D.align_face(tilted, tilted_lm, 128)
    assert crop.shape == (128, 128) and abs(D.eye_angle(marks)) < 1e-6


def _blob(size: int, x: float, y: float, sigma: float) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    return 200.0 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))


def _centroid(image: np.ndarray) -> np.ndarray:
    yy, xx = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    w = image.astype(np.float64)
    return np.array([(xx * w).sum(), (yy * w).sum()]) / w.sum()


@pytest.mark.parametrize("from_size, to_size", [(64, 32), (64, 48), (32, 64)])
def test_scale_landmarks_follows_the_resized_image(from_size, to_size):
    # A point is where a blob centred on it is: resize the blob with OpenCV and find it again.
    points = np.array([[20.3, 30.7], [40.0, 25.5], [31.5, 31.5]]) * from_size / 64
    sigma = 3.0 * from_size / 64
    for point in points:
        image = _blob(from_size, *point, sigma).astype(np.float32)
        resized = D.resize_images(image[None], to_size)[0]
        found = _centroid(resized)
        scaled = D.scale_landmarks(point[None], from_size, to_size)[0]
        # The naive point * to/from is off by half a pixel's difference (0.25 px at 64 -> 32).
        np.testing.assert_allclose(scaled, found, atol=0.03)
    same = np.array([[1.0, 2.0]])
    np.testing.assert_array_equal(D.scale_landmarks(same, 64, 64), same)


def test_resize_images_averages_when_shrinking_and_interpolates_when_growing():
    from skimage.transform import downscale_local_mean, resize

    rng = np.random.default_rng(0)
    stack = rng.integers(0, 256, (3, 16, 16), dtype=np.uint8)
    small = D.resize_images(stack, 8)
    assert small.shape == (3, 8, 8) and small.dtype == np.uint8
    for image, out in zip(stack, small, strict=True):  # INTER_AREA by 2 is the mean of each 2x2 block
        np.testing.assert_allclose(out, downscale_local_mean(image.astype(float), (2, 2)), atol=0.5 + 1e-9)
    smooth = (_blob(16, 7.0, 9.0, 4.0)).astype(np.float32)[None]
    big = D.resize_images(smooth, 32)
    assert big.shape == (1, 32, 32)
    expected = resize(smooth[0], (32, 32), order=1, mode="edge", anti_aliasing=False)  # bilinear, pixel centres
    np.testing.assert_allclose(big[0], expected, atol=1e-3)
    assert D.resize_images(stack, 16) is stack


def test_subject_folds_are_grouped_and_balanced():
    rng = np.random.default_rng(0)
    subjects = [f"{d}{s}" for d, n in (("A", 40), ("B", 12)) for s in range(n) for _ in range(rng.integers(2, 6))]
    datasets = [s[0] for s in subjects]
    folds = D.subject_folds(subjects, datasets, k=5, seed=3)
    table = pd.DataFrame({"s": subjects, "d": datasets, "f": folds})
    assert (table.groupby("s").f.nunique() == 1).all()  # no subject on both sides of any fold
    for k in range(1, 6):
        assert not set(table[table.f == k].s) & set(table[table.f != k].s)
    per = table.groupby(["d", "f"]).s.nunique().unstack()
    assert (per.max(axis=1) - per.min(axis=1) <= 1).all()  # every fold: the same share of each dataset
    np.testing.assert_array_equal(folds, D.subject_folds(subjects, datasets, k=5, seed=3))


def test_expression_names():
    assert D.normalise_expression("angry") == "Anger"
    assert D.normalise_expression("SU") == "Surprise"
    assert D.normalise_expression("neutral") is None
