"""CAM, Grad-CAM and Extremal Perturbation against their papers' definitions, computed here."""
import numpy as np
import pytest

from fermap_utils import attribution as A
from fermap_utils import explainers


@pytest.fixture(scope="module")
def fer(astronaut_face):
    from fermap_utils.data import align_face
    from fermap_utils.models import build_network

    model = build_network("FER2013").model
    face = align_face(*astronaut_face, size=64)[0].astype(np.float32)
    images = np.stack([face, face[:, ::-1]])
    labels = np.asarray(model.predict_on_batch(images[..., None])).argmax(1)
    return model, images, labels


def _softmax(z):
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _gap_model(scale: float = 1.0, seed: int = 0, size: int = 16):
    """A small GAP + dense network named as fermap's: conv -> gap -> dense softmax "predictions"."""
    import keras

    keras.utils.set_random_seed(seed)
    x = keras.Input((size, size, 1))
    a = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv")(x)
    g = keras.layers.GlobalAveragePooling2D(name="gap")(a)
    y = keras.layers.Dense(6, activation="softmax", name="predictions")(g)
    model = keras.Model(x, y)
    w, b = model.get_layer("predictions").get_weights()
    model.get_layer("predictions").set_weights([w * scale, b])
    return model


def _reference_gradcam(model, layer: str, images, labels, use_probability: bool = False):
    """Selvaraju et al.'s Grad-CAM before the ReLU, computed here from a functional sub-model:
    the class score is the head's pre-activation h @ W + b (or, for the contrast, the softmax)."""
    import keras
    import tensorflow as tf

    head = model.get_layer("predictions")
    sub = keras.Model(model.inputs[0], [model.get_layer(layer).output, head.input])
    kernel, bias = (tf.constant(v) for v in head.get_weights())
    x = tf.constant(np.asarray(images, np.float32)[..., None])
    with tf.GradientTape() as tape:
        a, h = sub(x, training=False)
        tape.watch(a)
        logits = tf.matmul(h, kernel) + bias
        out = tf.nn.softmax(logits) if use_probability else logits
        y = tf.gather(out, tf.constant(labels, tf.int32), batch_dims=1)
    alpha = tf.reduce_mean(tape.gradient(y, a), axis=(1, 2))  # (N, K)
    return np.einsum("nhwk,nk->nhw", a.numpy(), alpha.numpy())


def test_class_scores_are_the_logits_of_every_kind_of_head(fer):
    """softmax(class_scores) is the model's output, for each way fermap builds a head: the custom
    flatten networks, keras.applications, EfficientNet-Lite0, and FER2013's separate softmax."""
    from fermap_utils.models import build_network

    model, images, _ = fer
    rng = np.random.default_rng(0)
    for name, size in (("WeiNet", 32), ("MobileNetV3", 32), ("EfficientNetLite0Scratch", 32)):
        net = build_network(name, size=size, imagenet=False).model
        x = rng.uniform(0, 255, (2, size, size, 1)).astype(np.float32)
        np.testing.assert_allclose(_softmax(A.class_scores(net)(x)), net.predict_on_batch(x), atol=1e-5)
    logits = np.asarray(A.class_scores(model)(images[..., None]))
    np.testing.assert_allclose(_softmax(logits), model.predict_on_batch(images[..., None]), atol=1e-5)
    assert np.ptp(logits, axis=1).min() > 1.0  # real logits, not probabilities


def test_the_cut_reproduces_the_model(fer):
    model, images, _ = fer
    parts, head, layer = A._spatial_parts(model)
    features, logits = parts(images[..., None])
    assert np.asarray(features).ndim == 4 and head == "identity" and "conv" in layer
    np.testing.assert_allclose(_softmax(logits), np.asarray(model.predict_on_batch(images[..., None])), atol=1e-5)


def test_gradcam_is_the_logit_gradient_on_a_small_model_and_registry_networks():
    """fermap's Grad-CAM equals the definition computed here with tf.GradientTape on the logits:
    a small GAP network, WeiNet (flatten head) and EfficientNet-Lite0 (backbone + GAP); the
    explanation is its ReLU, upsampled bilinearly."""
    import cv2

    from fermap_utils.models import build_network

    rng = np.random.default_rng(1)
    cases = [(_gap_model(), "conv", 16)]
    for name in ("WeiNet", "EfficientNetLite0Scratch"):
        net = build_network(name, size=32, imagenet=False).model
        cases.append((net, A._spatial_parts(net)[2], 32))
    for model, layer, size in cases:
        images = rng.uniform(0, 255, (3, size, size)).astype(np.float32)
        labels = np.array([0, 3, 5])
        ours = A.gradcam_maps(model, images, labels)
        ref = _reference_gradcam(model, layer, images, labels)
        assert np.abs(ref).max() > 0
        np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())
        up = np.stack([cv2.resize(np.maximum(r, 0), (size, size), interpolation=cv2.INTER_LINEAR) for r in ref])
        np.testing.assert_allclose(A.gradcam(model, images, labels), up, rtol=1e-4, atol=1e-5 * up.max())


def test_gradcam_differs_from_the_probability_gradient_when_the_softmax_saturates():
    """With p close to 1 the probability's gradient vanishes and turns into a contrast with the
    other classes; the logit's does not. fermap's map follows the logit."""
    model = _gap_model(scale=200.0)
    images = np.random.default_rng(2).uniform(0, 255, (4, 16, 16)).astype(np.float32)
    labels = np.asarray(model.predict_on_batch(images[..., None])).argmax(1)
    assert np.asarray(model.predict_on_batch(images[..., None])).max(axis=1).min() > 0.999
    ours = A.gradcam_maps(model, images, labels)
    by_logit = _reference_gradcam(model, "conv", images, labels)
    by_prob = _reference_gradcam(model, "conv", images, labels, use_probability=True)
    np.testing.assert_allclose(ours, by_logit, rtol=1e-4, atol=1e-5 * np.abs(by_logit).max())

    def unit(m):
        m = m.reshape(len(m), -1)
        return m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-30)

    assert np.abs(by_prob).max() < 1e-2 * np.abs(by_logit).max()  # the vanishing gradient
    assert np.abs(unit(ours) - unit(by_prob)).max() > 0.1  # and not the same map up to scale


def test_cam_is_the_class_weighted_sum_of_the_last_maps_and_gradcam_its_multiple():
    """Zhou et al.: M_c = sum_k w_k^c A^k. For GAP + dense, Grad-CAM's alpha_k^c = w_k^c / (h w),
    so before the ReLU Grad-CAM = CAM / (h w): a positive multiple."""
    import keras

    from fermap_utils.models import build_network

    rng = np.random.default_rng(3)
    gap, lite = _gap_model(), build_network("EfficientNetLite0Scratch", size=32, imagenet=False).model
    for model, size in ((gap, 16), (lite, 32)):
        images = rng.uniform(0, 255, (3, size, size)).astype(np.float32)
        labels = np.array([1, 2, 4])
        layer = A._spatial_parts(model)[2]
        a = np.asarray(keras.Model(model.inputs[0], model.get_layer(layer).output)(images[..., None]))
        w = model.get_layer("predictions").get_weights()[0]
        ref = np.stack([a[i] @ w[:, c] for i, c in enumerate(labels)])
        cam = A.cam_maps(model, images, labels)
        np.testing.assert_allclose(cam, ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())
        grad = A.gradcam_maps(model, images, labels)
        hw = a.shape[1] * a.shape[2]
        np.testing.assert_allclose(grad * hw, cam, rtol=1e-3, atol=1e-4 * np.abs(cam).max())
        up = A.cam(model, images, labels)
        assert up.shape == images.shape and up.min() == 0 and up.max() > 0


def test_cam_on_fer2013_is_the_class_map(fer):
    """FER2013's last convolution has one map per class, so CAM is that class's map."""
    import keras

    model, images, labels = fer
    inner = model.get_layer("fer2013_mini_xception")
    last = [layer for layer in inner.layers if len(layer.output.shape) == 4][-1]
    a = np.asarray(keras.Model(inner.inputs, last.output)(images[..., None] / 127.5 - 1.0))
    np.testing.assert_allclose(A.cam_maps(model, images, labels), a[np.arange(len(labels)), :, :, labels], atol=1e-5)


def test_cam_refuses_a_flatten_head():
    from fermap_utils.models import build_network

    with pytest.raises(ValueError, match="global-average-pooling"):
        A.cam(build_network("WeiNet", size=32).model, np.zeros((1, 32, 32), np.float32), np.array([0]))


def test_area_target_is_the_sorted_step():
    r = A.area_target(0.25, 8)
    np.testing.assert_array_equal(r, [0, 0, 0, 0, 0, 0, 1, 1])


def test_extremal_achieves_its_areas_and_beats_random_masks(fer):
    """Each mask's area is within 0.02 of its target, and the mask of 20 % keeps more of the
    runner-up class's logit than random smooth masks of the same area."""
    import cv2

    model, images, _ = fer
    scores = A.class_scores(model)
    logits = np.asarray(scores(images[..., None]))
    labels = np.argsort(logits, axis=1)[:, -2]  # the runner-up class: room to improve
    found = A.extremal_perturbation(model, images, labels, areas=[0.1, 0.2], steps=300, seed=0)
    assert found.masks.shape == (2, *images.shape) and found.masks.min() >= 0 and found.masks.max() <= 1
    assert np.abs(found.achieved - np.array([[0.1], [0.2]])).max() <= 0.02, found.achieved
    assert np.abs((found.masks > 0.5).mean(axis=(2, 3)) - np.array([[0.1], [0.2]])).max() <= 0.02
    rows = np.arange(len(images))
    kept = np.asarray(scores((images * found.masks[1])[..., None]))[rows, labels]
    np.testing.assert_allclose(kept, found.scores[1], rtol=1e-4, atol=1e-4)
    rng = np.random.default_rng(0)
    best_random = np.full(len(images), -np.inf)
    for _ in range(10):
        field = cv2.resize(rng.random((16, 16)).astype(np.float32), (64, 64))
        random_mask = (field >= np.quantile(field, 0.8)).astype(np.float32)
        best_random = np.maximum(best_random, np.asarray(scores((images * random_mask)[..., None]))[rows, labels])
    assert (kept > best_random).all(), (kept, best_random)


def _saturating_model(size: int = 32):
    """Class 0's logit is 1e4 x the mean of the image's top-left quadrant: the softmax is exactly
    1.0 in float32 for any bright image, so the probability has no gradient; the logit does."""
    import keras

    x = keras.Input((size, size, 1))
    h = keras.layers.Flatten(name="flatten")(x)
    y = keras.layers.Dense(2, activation="softmax", name="predictions")(h)
    model = keras.Model(x, y)
    region = np.zeros((size, size), np.float32)
    region[: size // 2, : size // 2] = 1.0
    kernel = np.zeros((size * size, 2), np.float32)
    kernel[:, 0] = 1e4 * region.ravel() / region.sum() / 255.0
    model.get_layer("predictions").set_weights([kernel, np.zeros(2, np.float32)])
    return model, region.astype(bool)


def test_extremal_rewards_the_logit_so_a_saturated_softmax_still_guides_it():
    model, region = _saturating_model()
    images = np.full((2, 32, 32), 200.0, np.float32)
    assert (np.asarray(model.predict_on_batch(images[..., None]))[:, 0] == 1.0).all()
    found = A.extremal_perturbation(model, images, np.zeros(2, int), areas=[0.2], steps=150, seed=0)
    mask = found.masks[0]
    inside = mask[:, region].sum(axis=1) / mask.sum(axis=(1, 2))
    assert (inside > 0.7).all(), inside  # a quarter of the image holds most of the kept mass (by chance: 0.25)


def test_extremal_is_deterministic_for_a_seed(fer):
    model, images, labels = fer
    a = A.extremal_perturbation(model, images, labels, areas=[0.1], steps=20, seed=3)
    b = A.extremal_perturbation(model, images, labels, areas=[0.1], steps=20, seed=3)
    c = A.extremal_perturbation(model, images, labels, areas=[0.1], steps=20, seed=4)
    np.testing.assert_array_equal(a.masks, b.masks)
    assert not np.array_equal(a.masks, c.masks)


def test_explain_batch_returns_extremal_areas_per_image(fer):
    model, images, labels = fer
    maps, details = explainers.explain_batch("extremal", model, images, labels, {"extremal_steps": 30})
    assert maps.shape == images.shape
    assert details["area_achieved"].shape == details["area_target"].shape == (len(images), 2)
    np.testing.assert_allclose(details["area_achieved"].mean(axis=1), maps.mean(axis=(1, 2)), atol=1e-6)
    assert explainers.explain_batch("gradcam", model, images, labels)[1] == {}


def test_cam_gradcam_scale_recovers_the_factor_and_the_residual():
    rng = np.random.default_rng(0)
    g = rng.normal(size=(3, 2, 5))
    exact = A.cam_gradcam_scale(10 * g, g)
    assert exact["feature map"] == "2×5" and exact["h·w"] == 10
    assert exact["CAM / Grad-CAM"] == pytest.approx(10) and exact["max relative residual"] < 1e-12
    off = g.copy()
    off[0, 0, 0] += 1.0  # CAM no longer a multiple of Grad-CAM
    r = A.cam_gradcam_scale(off, g)
    expected = (off * g).sum() / (g * g).sum()
    assert r["CAM / Grad-CAM"] == pytest.approx(expected)
    assert r["max relative residual"] == pytest.approx(np.abs(off - expected * g).max() / np.abs(off).max())
