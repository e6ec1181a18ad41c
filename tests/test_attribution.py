"""CAM, Grad-CAM and Extremal Perturbation on a real network and a real face."""
import numpy as np
import pytest

from fermap_utils import attribution as A


@pytest.fixture(scope="module")
def fer(astronaut_face):
    from fermap_utils.data import align_face
    from fermap_utils.models import build_network

    model = build_network("FER2013").model
    face = align_face(*astronaut_face, size=64)[0].astype(np.float32)
    images = np.stack([face, face[:, ::-1]])
    labels = np.asarray(model.predict_on_batch(images[..., None])).argmax(1)
    return model, images, labels


def test_the_cut_reproduces_the_model(fer):
    model, images, _ = fer
    parts, head, layer = A._spatial_parts(model)
    features, probs = parts(images[..., None])
    assert np.asarray(features).ndim == 4 and head == "identity" and "conv" in layer
    np.testing.assert_allclose(np.asarray(probs), np.asarray(model.predict_on_batch(images[..., None])), atol=1e-5)


@pytest.mark.parametrize("method", ["cam", "gradcam"])
def test_class_maps_are_non_negative_images_of_the_face(fer, method):
    model, images, labels = fer
    maps = A.attribute(method, model, images, labels)
    assert maps.shape == images.shape and (maps >= 0).all() and maps.max() > 0


def test_cam_refuses_a_flatten_head():
    from fermap_utils.models import build_network

    with pytest.raises(ValueError, match="global-average-pooling"):
        A.cam(build_network("WeiNet", size=32).model, np.zeros((1, 32, 32), np.float32), np.array([0]))


def test_extremal_mask_keeps_its_area_and_finds_the_class(fer):
    """For a class the face is not predicted as, the optimised mask of 20 % raises its probability
    above what random masks of the same area give."""
    import cv2

    model, images, _ = fer
    probs = np.asarray(model.predict_on_batch(images[..., None]))
    labels = np.argsort(probs, axis=1)[:, -2]  # the runner-up class: room to improve
    masks = A.extremal_perturbation(model, images, labels, areas=[0.2], steps=80, seed=0)
    assert masks.shape == images.shape and masks.min() >= 0 and masks.max() <= 1
    kept = (masks > 0.5).mean(axis=(1, 2))
    assert np.all(np.abs(kept - 0.2) < 0.1), kept
    rows = np.arange(len(images))
    p_found = np.asarray(model.predict_on_batch((images * masks)[..., None]))[rows, labels]
    rng = np.random.default_rng(0)
    p_random = []
    for _ in range(10):
        field = cv2.resize(rng.random((8, 8)).astype(np.float32), (64, 64))
        random_mask = (field >= np.quantile(field, 0.8)).astype(np.float32)
        p_random.append(np.asarray(model.predict_on_batch((images * random_mask)[..., None]))[rows, labels])
    assert (p_found > np.max(p_random, axis=0)).all(), (p_found, np.max(p_random, axis=0))
