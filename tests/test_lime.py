"""LIME: the project's vectorised version against the lime package, and its building blocks."""

import numpy as np
import pytest

from fermap_utils import lime as E


@pytest.fixture(scope="module")
def fer_model():
    from fermap_utils.models import build_network

    return build_network("FER2013").model


@pytest.fixture(scope="module")
def face64(astronaut_face):
    from fermap_utils.data import align_face

    return align_face(*astronaut_face, size=64)[0].astype(np.float32)


def test_matches_lime_package_with_the_same_perturbations(fer_model, face64):
    """Same perturbation matrix -> the superpixel weights of lime 0.2.0.1 within 1e-6 (real model, real face)."""
    from lime import lime_image
    from lime.wrappers.scikit_image import SegmentationAlgorithm
    from skimage.color import gray2rgb

    settings = E.LimeSettings(num_samples=300)
    predict = E.keras_predictor(fer_model)
    label = int(predict(face64[None, ..., None]).argmax())

    def classifier(rgb_batch):  # lime hands over RGB in [0, 1]
        return predict((rgb_batch[..., :1] * 255.0).astype(np.float32))

    explainer = lime_image.LimeImageExplainer(kernel_width=settings.kernel_width, random_state=7)
    slic = SegmentationAlgorithm("slic", n_segments=settings.n_segments, compactness=settings.compactness,
                                 start_label=0)
    theirs = explainer.explain_instance(gray2rgb(face64 / 255.0), classifier, labels=(label,), top_labels=None,
                                        hide_color=0, num_samples=settings.num_samples, segmentation_fn=slic,
                                        distance_metric="cosine", batch_size=50)
    # lime draws one seed for the segmenter, then the 0/1 matrix, from its RandomState.
    state = np.random.RandomState(7)
    state.randint(0, high=1000)
    segments = E.segment(face64, settings.n_segments, settings.compactness)
    np.testing.assert_array_equal(segments, theirs.segments)
    k = int(segments.max()) + 1
    rows = state.randint(0, 2, settings.num_samples * k).reshape(settings.num_samples, k)
    rows[0] = 1
    ours = E.explain_images(predict, face64[None], [label], [0], settings, batch_size=128, rows=[rows])[0]
    theirs_w = np.zeros(k)
    for feature, weight in theirs.local_exp[label]:
        theirs_w[feature] = weight
    assert np.abs(theirs_w).max() > 1e-3  # a real, non-trivial explanation
    np.testing.assert_allclose(ours.weights, theirs_w, atol=1e-6, rtol=0)


def test_same_seed_same_explanation_bit_for_bit(fer_model, face64):
    predict = E.keras_predictor(fer_model)
    settings = E.LimeSettings(num_samples=200)
    images = np.stack([face64, face64[:, ::-1]])
    a = E.explain_images(predict, images, [3, 3], [11, 12], settings, batch_size=150)
    b = E.explain_images(predict, images, [3, 3], [11, 12], settings, batch_size=150)
    c = E.explain_images(predict, images, [3, 3], [99, 12], settings, batch_size=150)
    for x, y in zip(a, b):
        assert np.array_equal(x.image, y.image) and np.array_equal(x.rows, y.rows)
    assert not np.array_equal(a[0].rows, c[0].rows)
    assert np.array_equal(a[1].rows, c[1].rows)  # one image's seed fixes its samples, whatever its batch-mates


def test_perturb_hides_superpixels_in_black():
    image = np.full((4, 4), 200.0)
    segments = np.repeat(np.array([[0, 0, 1, 1]]), 4, axis=0)
    rows = np.array([[1, 1], [0, 1], [1, 0], [0, 0]])
    out = E.perturb(image, segments, rows)
    assert out.shape == (4, 4, 4)
    assert (out[0] == 200).all() and (out[3] == 0).all()
    assert (out[1][:, :2] == 0).all() and (out[1][:, 2:] == 200).all()


def test_kernel_and_ridge_match_sklearn():
    from sklearn.linear_model import Ridge
    from sklearn.metrics import pairwise_distances

    rng = np.random.default_rng(0)
    rows = E.perturbation_matrix(400, 25, rng)
    y = rows @ rng.normal(size=25) + rng.normal(scale=0.1, size=400)
    d = pairwise_distances(rows, rows[:1], metric="cosine").ravel()
    w = E.kernel_weights(rows, 0.25)
    np.testing.assert_allclose(w, np.sqrt(np.exp(-d ** 2 / 0.25 ** 2)), atol=1e-12)
    ref = Ridge(alpha=1.0).fit(rows, y, sample_weight=w).coef_
    np.testing.assert_allclose(E.ridge_weights(rows, y, w, 1.0), ref, atol=1e-9)


def test_explanation_keeps_positive_weights_only():
    segments = np.array([[0, 1], [2, 2]])
    out = E.explanation_image(segments, np.array([0.5, -0.2, 0.1]))
    np.testing.assert_allclose(out, [[0.5, 0.0], [0.1, 0.1]])


def test_batches_span_images():
    batches = list(E._chunks([3, 3, 2], 4))
    assert batches == [[(0, 0, 3), (1, 0, 1)], [(1, 1, 3), (2, 0, 2)]]


def test_settings_from_profile_default_to_the_paper():
    s = E.LimeSettings.from_profile({"num_samples": 200, "images_per_class": 3})
    assert s.num_samples == 200 and s.n_segments == 30 and s.kernel_width == 0.25 and s.alpha == 1.0
    assert s.explanation_dtype == "float" and s.warp_interpolation == "linear"


def test_a_wrong_lime_storage_setting_is_one_clear_error():
    from fermap_utils.errors import FermapError

    with pytest.raises(FermapError, match="warp_interpolation 'cubic'"):
        E.LimeSettings.from_profile({"warp_interpolation": "cubic"})
    with pytest.raises(FermapError, match="explanation_dtype 'int16'"):
        E.LimeSettings(explanation_dtype="int16")


def test_uint8_storage_is_the_explanation_stretched_to_255_and_rounded():
    picture = np.array([[0.0, 0.02], [0.01, 0.004]], np.float32)
    stored = E.as_stored(picture, "uint8")
    assert stored.dtype == np.uint8
    np.testing.assert_array_equal(stored, [[0, 255], [128, 51]])  # 255 x value / 0.02, rounded
    assert (E.as_stored(np.zeros((2, 2)), "uint8") == 0).all()
    assert E.as_stored(picture, "float") is not None and E.as_stored(picture, "float").dtype == np.float32


def test_the_authors_storage_and_warp_reproduce_their_pipeline(astronaut_face):
    """uint8 + nearest equals an 8-bit image warped by cv2.remap with INTER_NEAREST through the
    same map; the default equals the float image warped bilinearly; the two differ."""
    import cv2

    from fermap_utils.data import align_face
    from fermap_utils.warping import standardisation_map

    face, marks = align_face(*astronaut_face, size=64)[:2]
    segments = E.segment(face)
    picture = E.explanation_image(segments, np.linspace(-0.01, 0.03, int(segments.max()) + 1))
    map_x, map_y = standardisation_map(marks, picture.shape)
    eight_bit = np.rint(picture / picture.max() * 255).astype(np.uint8)
    theirs = cv2.remap(eight_bit, map_x, map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    authors = E.standardise(picture, marks, E.LimeSettings(explanation_dtype="uint8", warp_interpolation="nearest"))
    np.testing.assert_array_equal(authors, theirs.astype(np.float32))
    ours = E.standardise(picture, marks)
    bilinear = cv2.remap(picture, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    np.testing.assert_allclose(ours, bilinear, atol=1e-7)
    assert authors.shape == ours.shape == (275, 224)
    assert np.abs(authors / 255.0 - ours / picture.max()).max() > 0.1  # nearest and linear differ at the edges
