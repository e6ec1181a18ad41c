"""Explainers beyond LIME, from Park & Wallraven's comparison: CAM, Grad-CAM, Extremal Perturbation.

Each returns, for a batch of grey images and the class to explain, one non-negative map per
image at the image's size, which the same standardisation, heatmap and metric code consumes.

- **CAM** (Zhou et al. 2016): the class-weighted sum of the last feature maps. It needs a
  global-average-pooling head: the keras.applications networks, EfficientNet-Lite0, and the
  FER2013 mini-Xception (whose last convolution has one map per class).
- **Grad-CAM** (Selvaraju et al. 2017): feature maps weighted by the mean gradient of the
  class's probability. The layer is the last outer layer with a spatial output: the backbone's
  output for the applications and Lite0, the last convolution or pooling before ``flatten`` for
  the custom networks, the last convolution of the mini-Xception for FER2013.
- **Extremal Perturbation** (Fong, Patrick & Vedaldi 2019): a smooth mask of fixed area
  optimised so that the kept part of the image (the rest black, as LIME hides superpixels)
  keeps the class's probability high. Areas, steps and smoothness are in ``config.yaml``
  (``extremal``); the explanation is the mean of the masks found for each area.
"""
from __future__ import annotations

import numpy as np

from .config import section

METHODS = ("lime", "cam", "gradcam", "extremal")


def _spatial_parts(model):
    """(callable x -> (feature maps, class probabilities), head weights, layer name).

    fermap's models are chains of outer layers (the grey input repeated to three channels,
    scaling, a backbone or conv stack, the head), so the chain is cut after the last layer
    with a spatial output. ``head weights`` are the dense layer's for a GAP head, "identity"
    for FER2013 (one map per class), None for a flatten head.
    """
    import keras

    inner = next((l for l in model.layers if l.name == "fer2013_mini_xception"), None)
    if inner is not None:  # the fixed FER2013 network: cut inside the mini-Xception
        last = [l for l in inner.layers if len(l.output.shape) == 4][-1]
        features = keras.Model(inner.inputs, [last.output, inner.output])

        def fer(x):
            a, logits = features(x / 127.5 - 1.0)
            return a, keras.ops.softmax(logits[:, :6])

        return fer, "identity", f"fer2013_mini_xception/{last.name}"
    names = [l.name for l in model.layers]
    cut = names.index("gap") - 1 if "gap" in names else names.index("flatten") - 1
    dense = model.get_layer("predictions").get_weights()[0] if "gap" in names else None
    chain = model.layers[1:]  # after the input layer

    def run(layers, h):
        for layer in layers:
            if isinstance(layer, keras.layers.Concatenate):  # the grey input repeated to 3 channels
                h = layer([h] * len(layer.input))
            else:
                h = layer(h, training=False)
        return h

    def parts(x):
        a = run(chain[:cut], x)
        return a, run(chain[cut:], a)

    return parts, dense, names[cut]


def _upsample(maps: np.ndarray, size: int) -> np.ndarray:
    import cv2

    out = np.stack([cv2.resize(m.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR) for m in maps])
    return np.maximum(out, 0)


def cam(model, images: np.ndarray, labels: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Class activation maps, (N, H, W), non-negative, at the images' size."""
    parts, dense, layer = _spatial_parts(model)
    if dense is None:
        raise ValueError(f"CAM needs a global-average-pooling head; {model.name} flattens after {layer}")
    out = []
    for start in range(0, len(images), batch_size):
        x = np.asarray(images[start:start + batch_size], np.float32)[..., None]
        a, _ = parts(x)
        a = np.asarray(a)
        y = np.asarray(labels[start:start + batch_size])
        if isinstance(dense, str):  # one map per class
            maps = a[np.arange(len(y)), :, :, y]
        else:
            maps = np.einsum("nhwk,kn->nhw", a, dense[:, y])
        out.append(_upsample(maps, images.shape[1]))
    return np.concatenate(out)


def gradcam(model, images: np.ndarray, labels: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Grad-CAM maps, (N, H, W), non-negative, at the images' size."""
    import tensorflow as tf

    parts, _, _ = _spatial_parts(model)
    out = []
    for start in range(0, len(images), batch_size):
        x = tf.constant(np.asarray(images[start:start + batch_size], np.float32)[..., None])
        y = tf.constant(np.asarray(labels[start:start + batch_size]), dtype=tf.int32)
        with tf.GradientTape() as tape:
            a, probs = parts(x)  # the tape records a as an intermediate result
            score = tf.gather(probs, y, batch_dims=1)
        g = tape.gradient(score, a)
        weights = tf.reduce_mean(g, axis=(1, 2), keepdims=True)
        maps = tf.nn.relu(tf.reduce_sum(weights * a, axis=-1)).numpy()
        out.append(_upsample(maps, images.shape[1]))
    return np.concatenate(out)


def extremal_perturbation(model, images: np.ndarray, labels: np.ndarray, areas: list[float] | None = None,
                          steps: int | None = None, grid: int | None = None, learning_rate: float | None = None,
                          seed: int = 0, eager: bool = False) -> np.ndarray:
    """Extremal Perturbation masks (preservation game), averaged over the areas; (N, H, W) in [0, 1].

    For each area a, a mask m (a ``grid`` x ``grid`` field, bilinearly upsampled) is optimised with
    Adam to maximise p(class | image * m) while a penalty pulls the sorted mask values towards a
    vector with exactly a share a of ones (Fong et al.'s area constraint). ``eager`` runs the
    steps without tracing a graph (faster for a handful of steps on a deep network).
    """
    import keras
    import tensorflow as tf

    cfg = section("extremal")
    areas = list(areas or cfg["areas"])
    steps = int(steps or cfg["steps"])
    grid = int(grid or cfg["grid"])
    lr = float(learning_rate or cfg["learning_rate"])
    penalty = float(cfg["area_weight"])
    x = tf.constant(np.asarray(images, np.float32)[..., None])
    n, size = len(images), images.shape[1]
    y = tf.constant(np.asarray(labels), dtype=tf.int32)
    total = np.zeros((n, size, size), np.float32)
    rng = np.random.default_rng(seed)
    for area in areas:
        target = tf.constant(np.sort(np.r_[np.zeros(size * size - int(round(area * size * size))),
                                           np.ones(int(round(area * size * size)))]).astype(np.float32))
        param = tf.Variable(rng.uniform(0.4, 0.6, (n, grid, grid, 1)).astype(np.float32))
        opt = keras.optimizers.Adam(lr)

        def step():
            with tf.GradientTape() as tape:
                m = tf.image.resize(tf.clip_by_value(param, 0.0, 1.0), (size, size), method="bilinear")
                probs = model(x * m, training=False)
                score = tf.gather(probs, y, batch_dims=1)
                ranked = tf.sort(tf.reshape(m, (n, -1)), axis=1)
                area_loss = tf.reduce_mean(tf.square(ranked - target), axis=1)
                loss = tf.reduce_sum(-score + penalty * area_loss)
            opt.apply_gradients([(tape.gradient(loss, param), param)])

        if not eager:
            step = tf.function(step)
        for _ in range(steps):
            step()
        m = tf.image.resize(tf.clip_by_value(param, 0.0, 1.0), (size, size), method="bilinear").numpy()[..., 0]
        total += m
    return total / len(areas)


def attribute(method: str, model, images: np.ndarray, labels: np.ndarray, seed: int = 0,
              steps: int | None = None, eager: bool = False) -> np.ndarray:
    """Explanation images for a batch, by a gradient or optimisation method (not LIME);
    ``steps`` overrides Extremal Perturbation's configured number of steps, ``eager`` runs them
    without tracing a graph."""
    if method == "cam":
        return cam(model, images, labels)
    if method == "gradcam":
        return gradcam(model, images, labels)
    if method == "extremal":
        return extremal_perturbation(model, images, labels, steps=steps, seed=seed, eager=eager)
    raise ValueError(f"unknown method {method!r}; one of {', '.join(METHODS)}")
