"""Explainers beyond LIME, from Park & Wallraven's comparison: CAM, Grad-CAM, Extremal Perturbation.

Each returns, for a batch of grey images and the class to explain, one non-negative map per
image at the image's size, which the same standardisation, heatmap and metric code consumes.
All three work on the class score y^c *before* the softmax (the logit), as their papers define
them: every fermap network ends in a layer named ``predictions``, either a dense layer with a
softmax activation or a separate softmax (FER2013), and :func:`class_scores` evaluates its
pre-activation.

- **CAM** (Zhou et al. 2016): M_c = sum_k w_k^c A^k, the last feature maps A weighted by the
  dense head's weights of class c. It needs a global-average-pooling head: the
  keras.applications networks, EfficientNet-Lite0, and the FER2013 mini-Xception (whose last
  convolution has one map per class, so w is the identity).
- **Grad-CAM** (Selvaraju et al. 2017): alpha_k^c = mean over the map of dy^c/dA^k, the map
  ReLU(sum_k alpha_k^c A^k), upsampled. The layer is the last outer layer with a spatial output:
  the backbone's output for the applications and Lite0, the last convolution or pooling before
  ``flatten`` for the custom networks, the last convolution of the mini-Xception for FER2013.
  For a GAP + dense head, alpha_k^c = w_k^c / (h w): Grad-CAM is CAM divided by the map's size.
- **Extremal Perturbation** (Fong, Patrick & Vedaldi 2019), preservation game: for each area a,
  the smooth mask m that maximises y^c(x * m) - lambda_t ||sort(m) - r_a||^2 / (H W), with r_a
  the sorted target of (1 - a) H W zeros and a H W ones, and lambda_t growing geometrically
  over the steps so that the area constraint holds at the end. As in the paper, the field starts at
  0.5 and SGD with momentum 0.9 climbs the energy (Keras's SGD has no dampening: its step 0.01 moves
  as far as the authors' 0.1 with dampening 0.9). Deviations from the paper (black fill, grid mask,
  the area weight's start, steps) are listed in ``config.yaml`` (``explainers: extremal``) and chapter 12.

Which explainer runs by which name, with which settings, is :mod:`fermap_utils.explainers`.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .config import section


def _pre_softmax(head, h):
    """The pre-activation of the model's ``predictions`` layer on its input ``h``: the logits."""
    import keras

    if isinstance(head, keras.layers.Dense):
        if head.activation is not keras.activations.softmax:
            raise ValueError(f"{head.name}: expected a dense layer with a softmax activation")
        z = keras.ops.matmul(h, head.kernel)
        return z + head.bias if head.use_bias else z
    if isinstance(head, (keras.layers.Activation, keras.layers.Softmax)):
        if isinstance(head, keras.layers.Activation) and head.activation is not keras.activations.softmax:
            raise ValueError(f"{head.name}: expected a softmax activation")
        return h
    raise ValueError(f"{head.name}: the last layer is neither a softmax dense layer nor a softmax")


def class_scores(model):
    """A callable x -> class scores before the softmax (the logits), (N, 6), for a fermap network.

    The model's last layer must be named ``predictions`` and be a dense layer with a softmax
    activation, or a softmax activation on its own (FER2013); its input is cut out of the model
    and the pre-activation evaluated on it, so ``softmax(class_scores(model)(x)) == model(x)``.
    """
    import keras

    head = model.get_layer("predictions")
    features = keras.Model(model.inputs[0], head.input)

    def scores(x):
        return _pre_softmax(head, features(x, training=False))

    return scores


def _spatial_parts(model):
    """(callable x -> (feature maps, class logits), head weights, layer name).

    fermap's models are chains of outer layers (the grey input repeated to three channels,
    scaling, a backbone or conv stack, the head), so the chain is cut after the last layer
    with a spatial output. ``head weights`` are the dense layer's for a GAP head, "identity"
    for FER2013 (one map per class), None for a flatten head.
    """
    import keras

    inner = next((layer for layer in model.layers if layer.name == "fer2013_mini_xception"), None)
    if inner is not None:  # the fixed FER2013 network: cut inside the mini-Xception
        last = [layer for layer in inner.layers if len(layer.output.shape) == 4][-1]
        features = keras.Model(inner.inputs[0], [last.output, inner.output])

        def fer(x):
            a, logits7 = features(x / 127.5 - 1.0)
            # FER2013's fixed 7-output layout (its six expressions, then Neutral), not config.expressions():
            # fermap's softmax is over the first six, so these are its logits
            return a, logits7[:, :6]

        return fer, "identity", f"fer2013_mini_xception/{last.name}"
    names = [layer.name for layer in model.layers]
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
        return a, _pre_softmax(chain[-1], run(chain[cut:-1], a))

    return parts, dense, names[cut]


def _upsample(maps: np.ndarray, size: int) -> np.ndarray:
    return np.stack([cv2.resize(m.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR) for m in maps])


def _batches(images: np.ndarray, labels: np.ndarray, batch_size: int):
    for start in range(0, len(images), batch_size):
        yield (np.asarray(images[start:start + batch_size], np.float32)[..., None],
               np.asarray(labels[start:start + batch_size]))


def cam_maps(model, images: np.ndarray, labels: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Zhou et al.'s class activation maps at the feature maps' resolution, before any clipping.

    Parameters
    ----------
    model : keras.Model
        A fermap network with a global-average-pooling head.
    images : (N, H, W) array
        Grey images in [0, 255].
    labels : (N,) ints
        The class to explain for each image.
    batch_size : int

    Returns
    -------
    (N, h, w) float32 array
        sum_k w_k^c A^k, with A the last feature maps and w the dense head's weights.
    """
    parts, dense, layer = _spatial_parts(model)
    if dense is None:
        raise ValueError(f"CAM needs a global-average-pooling head; {model.name} flattens after {layer}")
    out = []
    for x, y in _batches(images, labels, batch_size):
        a = np.asarray(parts(x)[0])
        out.append(a[np.arange(len(y)), :, :, y] if isinstance(dense, str)
                   else np.einsum("nhwk,kn->nhw", a, dense[:, y]))
    return np.concatenate(out).astype(np.float32)


def gradcam_maps(model, images: np.ndarray, labels: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Selvaraju et al.'s Grad-CAM at the feature maps' resolution, before the ReLU.

    Parameters
    ----------
    model, images, labels, batch_size
        As for :func:`cam_maps`; any fermap network, whatever its head.

    Returns
    -------
    (N, h, w) float32 array
        sum_k alpha_k^c A^k, alpha_k^c the spatial mean of d y^c / d A^k and y^c the class's
        score before the softmax.
    """
    import tensorflow as tf

    parts, _, _ = _spatial_parts(model)

    # In graph mode: eager backprop through the mini-Xception corrupts the heap under oneDNN.
    @tf.function(reduce_retracing=True)
    def maps(x, y):
        with tf.GradientTape() as tape:
            a, logits = parts(x)  # the tape records a as an intermediate result
            score = tf.gather(logits, y, batch_dims=1)
        weights = tf.reduce_mean(tape.gradient(score, a), axis=(1, 2), keepdims=True)
        return tf.reduce_sum(weights * a, axis=-1)

    out = [maps(tf.constant(x), tf.constant(y, tf.int32)).numpy() for x, y in _batches(images, labels, batch_size)]
    return np.concatenate(out).astype(np.float32)


def cam_gradcam_scale(cam: np.ndarray, gradcam: np.ndarray) -> dict[str, float]:
    """How far CAM is a positive multiple of Grad-CAM: the identity of a GAP + dense head.

    For such a head, alpha_k^c = w_k^c / (h w), so before any clipping Grad-CAM is CAM divided by
    the number of feature positions. This fits the least-squares scale between the two maps
    and reports what it leaves.

    Parameters
    ----------
    cam, gradcam : (N, h, w) arrays
        :func:`cam_maps` and :func:`gradcam_maps` of the same images and classes.

    Returns
    -------
    dict
        ``feature map`` (``"h×w"``), ``CAM / Grad-CAM`` (the least-squares scale), ``h·w`` (the
        number of positions: the identity's scale) and ``max relative residual`` (the largest
        ``|cam - scale * gradcam|`` over the largest ``|cam|``).

    Examples
    --------
    >>> g = np.arange(8.0).reshape(2, 2, 2)
    >>> r = cam_gradcam_scale(4 * g, g)
    >>> r["feature map"], r["CAM / Grad-CAM"], r["h·w"], r["max relative residual"]
    ('2×2', 4.0, 4, 0.0)
    """
    c, g = np.asarray(cam, np.float64), np.asarray(gradcam, np.float64)
    ratio = float((c * g).sum() / (g * g).sum())
    return {"feature map": "×".join(map(str, c.shape[1:])), "CAM / Grad-CAM": ratio,
            "h·w": int(c.shape[1] * c.shape[2]),
            "max relative residual": float(np.abs(c - ratio * g).max() / np.abs(c).max())}


def cam(model, images: np.ndarray, labels: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Class activation maps, (N, H, W): :func:`cam_maps` upsampled bilinearly to the images' size,
    negative values set to 0 (the explanation keeps what speaks for the class)."""
    return np.maximum(_upsample(cam_maps(model, images, labels, batch_size), images.shape[1]), 0)


def gradcam(model, images: np.ndarray, labels: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Grad-CAM, (N, H, W): ReLU of :func:`gradcam_maps`, upsampled bilinearly to the images' size."""
    return _upsample(np.maximum(gradcam_maps(model, images, labels, batch_size), 0), images.shape[1])


#: A mask value strictly between these is neither kept nor hidden (:attr:`ExtremalResult.undecided`).
UNDECIDED = (0.05, 0.95)


@dataclass
class ExtremalResult:
    """Extremal Perturbation's masks for a batch: one per (area, image)."""

    areas: np.ndarray  # (A,) the target areas
    masks: np.ndarray  # (A, N, H, W) in [0, 1]
    scores: np.ndarray  # (A, N) the class score (logit) of each preserved image

    @property
    def achieved(self) -> np.ndarray:
        """(A, N): each mask's area, the mean of its values (the share of the image it keeps)."""
        return self.masks.mean(axis=(2, 3))

    @property
    def undecided(self) -> np.ndarray:
        """(A, N): the share of each mask's values strictly between 0.05 and 0.95 (0 for a binary mask):
        how far the optimisation is from the binary mask the method's definition asks for."""
        return ((self.masks > UNDECIDED[0]) & (self.masks < UNDECIDED[1])).mean(axis=(2, 3))

    @property
    def explanation(self) -> np.ndarray:
        """(N, H, W): the masks averaged over the areas, the picture the pipeline standardises."""
        return self.masks.mean(axis=0)


def area_target(area: float, n_pixels: int) -> np.ndarray:
    """Fong et al.'s r_a: the sorted vector of (1 - a) n zeros followed by a n ones."""
    ones = int(round(area * n_pixels))
    return np.r_[np.zeros(n_pixels - ones), np.ones(ones)].astype(np.float32)


def extremal_perturbation(model, images: np.ndarray, labels: np.ndarray, areas: list[float] | None = None,
                          steps: int | None = None, grid: int | None = None, learning_rate: float | None = None,
                          area_weight: tuple[float, float] | None = None, seed: int = 0) -> ExtremalResult:
    """Extremal Perturbation (preservation game) with the ranking-based area constraint.

    Parameters
    ----------
    model : keras.Model
        A fermap network (its ``predictions`` layer gives the logits, :func:`class_scores`).
    images : (N, H, W) array
        Grey images in [0, 255]; the hidden part of a preserved image is black.
    labels : (N,) ints
        The class to explain for each image.
    areas, steps, grid, learning_rate, area_weight : optional
        Override ``config.yaml`` (``explainers: extremal``): the target areas, the SGD steps, the side of
        the mask field (bilinearly upsampled to the image), SGD's step size, and the first and
        last weight of the area constraint.
    seed : int
        Fixes the small noise around 0.5 that the mask field starts from (it breaks the ties of the sort).

    Returns
    -------
    ExtremalResult
        The masks (one per area and image), their achieved areas and the final class scores.

    Notes
    -----
    Every (area, image) pair is one row of a single batch. The loss of a row is
    -y^c(x * m) + lambda_t mean((sort(m) - r_a)^2), lambda_t growing geometrically from the first
    to the second of ``area_weight`` over the steps; after each step the field is projected back
    onto [0, 1]. The field starts at 0.5, so the logit's gradient ranks the pixels before the area
    constraint grows strong enough to fix that ranking. Plain SGD with momentum (not Adam) moves each
    cell in proportion to its gradient: Adam rescales every cell's step to the same size, so cells
    whose gradient is only rounding noise move as far as the informative ones, and the result then
    depends on the CPU's floating-point order.
    """
    import keras
    import tensorflow as tf

    cfg = section("explainers")["extremal"]
    areas = np.asarray(areas or cfg["areas"], np.float64)
    steps = int(steps or cfg["steps"])
    grid = int(grid or cfg["grid"])
    lr = float(learning_rate or cfg["learning_rate"])
    first, last = (float(w) for w in (area_weight or cfg["area_weight"]))
    images = np.asarray(images, np.float32)
    n, size = len(images), images.shape[1]
    rows = len(areas) * n  # row r is area r // n, image r % n
    x = tf.constant(np.tile(images, (len(areas), 1, 1))[..., None])
    y = tf.constant(np.tile(np.asarray(labels), len(areas)), dtype=tf.int32)
    target = tf.constant(np.stack([area_target(a, size * size) for a in areas for _ in range(n)]))
    rng = np.random.default_rng(seed)
    param = tf.Variable((0.5 + rng.uniform(-0.005, 0.005, (rows, grid, grid, 1))).astype(np.float32))
    scores = class_scores(model)
    opt = keras.optimizers.SGD(lr, momentum=0.9)

    @tf.function
    def step(weight):
        with tf.GradientTape() as tape:
            m = tf.image.resize(param, (size, size), method="bilinear")
            reward = tf.gather(scores(x * m), y, batch_dims=1)
            ranked = tf.sort(tf.reshape(m, (rows, -1)), axis=1)
            loss = tf.reduce_sum(-reward + weight * tf.reduce_mean(tf.square(ranked - target), axis=1))
        opt.apply_gradients([(tape.gradient(loss, param), param)])
        param.assign(tf.clip_by_value(param, 0.0, 1.0))  # projected: the field stays in [0, 1]

    for weight in np.geomspace(first, last, steps):  # annealed: the area holds at the end
        step(tf.constant(weight, tf.float32))
    m = tf.image.resize(param, (size, size), method="bilinear")
    final = tf.gather(scores(x * m), y, batch_dims=1).numpy()
    return ExtremalResult(areas, m.numpy()[..., 0].reshape(len(areas), n, size, size),
                          final.reshape(len(areas), n))
