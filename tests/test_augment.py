import numpy as np

from fermap_utils import augment as A


def test_gamma():
    img = np.arange(256, dtype=np.uint8).reshape(16, 16)
    np.testing.assert_array_equal(A.adjust_gamma(img, 1.0), img)
    assert A.adjust_gamma(img, 2.0)[8, 0] < img[8, 0]


def test_mirror_twice_is_identity(astronaut_face):
    gray, lm = astronaut_face
    once = A.mirror(gray, lm)
    twice = A.mirror(*once)
    np.testing.assert_array_equal(twice[0], gray)
    np.testing.assert_allclose(twice[1], lm)
    # the mirrored face's 'left eye' is still on the image's left
    assert once[1][36:42, 0].mean() < once[1][42:48, 0].mean()


def test_translate_moves_landmarks(astronaut_face):
    gray, lm = astronaut_face
    out, marks = A.translate(gray, lm, 5, -3)
    np.testing.assert_allclose(marks, lm + (5, -3))
    np.testing.assert_array_equal(out[103, 105:200], gray[106, 100:195])


def test_crop_keeps_eyes_nose_and_mouth(astronaut_face):
    gray, lm = astronaut_face
    rng = np.random.default_rng(0)
    for _ in range(20):
        out, marks = A.crop_keeping_features(gray, lm, rng)
        assert out.shape == gray.shape
        feats = marks[A.FEATURES]
        assert feats.min() >= 0 and feats[:, 0].max() < gray.shape[1] and feats[:, 1].max() < gray.shape[0]


def test_random_augment_is_seeded(astronaut_face):
    gray, lm = astronaut_face
    a = A.random_augment(gray, lm, np.random.default_rng(7))
    b = A.random_augment(gray, lm, np.random.default_rng(7))
    c = A.random_augment(gray, lm, np.random.default_rng(8))
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])
