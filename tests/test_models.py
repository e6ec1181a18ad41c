"""The network registry, the offline weight policy, the Lite0 port and the FER2013 model."""
from pathlib import Path

import cv2
import numpy as np
import pytest

from fermap_utils import models as M

# ImageNet class indices (facts of the ImageNet-1k label order)
CATS = {281, 282, 283, 284, 285, 287}  # tabby, tiger cat, Persian, Siamese, Egyptian cat, lynx
COFFEE = {967, 968, 504}  # espresso, cup, coffee mug


@pytest.mark.slow
def test_paper_parameter_counts_within_10_percent():
    table = M.summary()
    paper = table[table.network.isin(M.paper_networks())]
    assert len(paper) == 12
    bad = paper[~paper.within_10pct.astype(bool)]
    assert bad.empty, bad.to_string()
    assert {"EfficientNetLite0", "EfficientNetLite0Scratch", "FER2013"} <= set(table.network)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _same_pad(x: np.ndarray, k: int, s: int, value: float) -> np.ndarray:
    """TensorFlow's 'same' padding of (n, h, w, c): the extra pixel goes bottom/right."""
    pads = []
    for n in x.shape[1:3]:
        total = max((-(-n // s) - 1) * s + k - n, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, [(0, 0), *pads, (0, 0)], constant_values=value)


def _windows(x: np.ndarray, k: int, s: int) -> np.ndarray:
    """(n, h', w', c, k, k) windows of a padded (n, h, w, c) array, every ``s`` pixels."""
    return np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))[:, ::s, ::s]


def _forward_by_hand(layers: list[str], weights: list[np.ndarray], x: np.ndarray, channels: int) -> np.ndarray:
    """A custom network of the configuration (``"conv 32 7"``, ``"maxpool 2 1"``, ...) in NumPy, from its
    weights: x / 255, grey repeated to ``channels``, ReLU convolutions, max-pools, flatten, softmax head."""
    h = np.repeat(x.astype(np.float64) / 255.0, channels, axis=-1)
    w = iter(weights)
    for item in layers:
        kind, *args = item.split()
        if kind == "conv":
            f, k, s = int(args[0]), int(args[1]), int(args[2]) if len(args) > 2 else 1
            kernel, bias = next(w), next(w)
            assert kernel.shape == (k, k, h.shape[-1], f)
            patches = _windows(_same_pad(h, k, s, 0.0), k, s)
            h = np.maximum(np.tensordot(patches, kernel, axes=([4, 5, 3], [0, 1, 2])) + bias, 0)
        elif kind == "maxpool":
            k, s = int(args[0]), int(args[1])
            h = _windows(_same_pad(h, k, s, -np.inf), k, s).max(axis=(-2, -1))
        elif kind == "flatten":
            h = h.reshape(len(h), -1)
        elif kind == "dense":
            h = np.maximum(h @ next(w) + next(w), 0)
        # dropout: the identity at inference
    return _softmax(h @ next(w) + next(w))


def _params_by_hand(layers: list[str], size: int, channels: int, classes: int) -> int:
    """Parameters of a configured custom network counted from its layer list and input size."""
    n, c, total = size, channels, 0
    for item in layers:
        kind, *args = item.split()
        if kind == "conv":
            f, k, s = int(args[0]), int(args[1]), int(args[2]) if len(args) > 2 else 1
            total += k * k * c * f + f
            n, c = -(-n // s), f
        elif kind == "maxpool":
            n = -(-n // int(args[1]))
        elif kind == "flatten":
            c, n = n * n * c, 1
        elif kind == "dense":
            total += c * int(args[0]) + int(args[0])
            c = int(args[0])
    return total + c * classes + classes


@pytest.mark.parametrize("name", ["WeiNet", "SongNet"])
def test_custom_networks_compute_their_configured_layers(name):
    """The configured small networks, built at 40 px, give the probabilities a NumPy forward pass of their
    configuration gives from the same weights, and have the parameters their layer list counts."""
    from fermap_utils.config import expressions

    s = M.spec(name)
    built = M.build_network(name, size=40, imagenet=False)
    assert built.input_size == 40 and not built.pretrained
    classes = len(expressions())
    assert M.count_params(built.model) == _params_by_hand(s["layers"], 40, s["channels"], classes)
    x = np.random.default_rng(0).uniform(0, 255, (2, 40, 40, 1)).astype("float32")
    ours = np.asarray(built.model(x, training=False))
    expected = _forward_by_hand(s["layers"], [np.asarray(v) for v in built.model.get_weights()], x, s["channels"])
    assert ours.shape == (2, classes)
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-6)
    assert not np.allclose(ours, 1 / classes, atol=1e-3)  # not a uniform output that anything would match


@pytest.mark.parametrize("name", ["EfficientNetLite0Scratch", "MobileNetV3"])
def test_application_networks_end_in_a_softmax_over_the_expressions(name):
    """The other networks' output is a softmax over one logit per expression, computed here from the
    penultimate features and the head's weights."""
    import keras

    from fermap_utils.config import expressions

    model = M.build_network(name, size=48, imagenet=False).model
    head = model.get_layer("predictions")
    features = keras.Model(model.inputs, head.input)
    x = np.random.default_rng(0).uniform(0, 255, (2, 48, 48, 1)).astype("float32")
    kernel, bias = (np.asarray(v, np.float64) for v in head.get_weights())
    assert kernel.shape[1] == len(expressions())
    expected = _softmax(np.asarray(features(x, training=False), np.float64) @ kernel + bias)
    np.testing.assert_allclose(np.asarray(model(x, training=False)), expected, rtol=1e-4, atol=1e-6)


def test_missing_imagenet_weights_are_never_silent(monkeypatch):
    import keras

    real = keras.applications.VGG16

    def offline(*args, weights=None, **kwargs):
        if weights == "imagenet":
            raise Exception("URL fetch failure: no network")
        return real(*args, weights=weights, **kwargs)

    monkeypatch.setattr(keras.applications, "VGG16", offline)
    with pytest.warns(RuntimeWarning, match="VGG16: ImageNet weights unavailable"):
        built = M.build_network("VGG16", size=32)
    assert built.pretrained is False and "unavailable" in built.weights


def test_input_size_caps_respect_minimums():
    assert M.input_size("VGG16", 64) == 64
    assert M.input_size("InceptionV3", 48) == 75
    assert M.input_size("WeiNet", 128) == 64
    assert M.input_size("FER2013", 32) == 64


def test_fer2013_drops_neutral_and_renormalises():
    import keras

    built = M.build_network("FER2013")
    assert not built.trainable and built.input_size == 64
    raw = keras.models.load_model(M.fer2013_model_path(), compile=False)
    from skimage import data

    face = cv2.resize(cv2.cvtColor(data.astronaut()[30:250, 150:330], cv2.COLOR_RGB2GRAY), (64, 64))
    x = face[None, :, :, None].astype("float32")
    p7 = np.asarray(raw(x / 127.5 - 1.0))[0]
    p6 = np.asarray(built.model(x))[0]
    np.testing.assert_allclose(p6, p7[:6] / p7[:6].sum(), atol=1e-5)


def _import_torch():
    """torch, the port test's reference; missing, the test skips locally but fails in CI (``CI`` set)."""
    import os

    if os.environ.get("CI"):
        import torch  # CI installs torch (.ci/setup); its absence there is a failure, not a skip

        return torch
    return pytest.importorskip("torch", reason="the CPU torch is the reference model of the port test")


def test_torch_is_required_in_ci(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError("No module named 'torch'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(ImportError):
        _import_torch()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        _import_torch()


def test_summary_cache_is_keyed_on_the_builders_code(tmp_path):
    sources = []
    for path in M.BUILDER_SOURCES:
        copy = tmp_path / path.name
        copy.write_bytes(path.read_bytes())
        sources.append(copy)
    key = M.summary_key(tuple(sources))
    assert key == M.summary_key(tuple(sources))
    for copy in sources:
        original = copy.read_bytes()
        copy.write_bytes(original + b"\n# a changed builder\n")
        assert M.summary_key(tuple(sources)) != key, copy.name
        copy.write_bytes(original)
    assert M.summary_key(tuple(sources)) == key


def test_tests_cache_outside_the_home(private_cache):
    from fermap_utils.config import cache_dir

    assert cache_dir() == private_cache
    assert Path.home() not in cache_dir().parents


def _torch_reference(state):
    """EfficientNet-Lite0 in PyTorch, written independently of the Keras port, as the reference."""
    torch = _import_torch()
    import torch.nn.functional as F
    from torch import nn

    from fermap_utils.efficientnet_lite import STAGES

    def same_pad(x, k, s):  # TensorFlow's 'same': the extra pixel goes bottom/right
        h, w = x.shape[-2:]
        ph = max((-(-h // s) - 1) * s + k - h, 0)
        pw = max((-(-w // s) - 1) * s + k - w, 0)
        return F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])

    class Lite0(nn.Module):
        def forward(self, x):
            sd = self.sd
            def bn(t, k):
                return F.batch_norm(t, sd[k + ".running_mean"], sd[k + ".running_var"], sd[k + ".weight"],
                                    sd[k + ".bias"], False, 0.0, 1e-3)

            x = F.relu6(bn(F.conv2d(same_pad(x, 3, 2), sd["_conv_stem.weight"], stride=2), "_bn0"))
            b, cin = 0, 32
            for e, k, s, cout, r in STAGES:
                for i in range(r):
                    st = s if i == 0 else 1
                    p = f"_blocks.{b}."
                    h = x
                    if e != 1:
                        h = F.relu6(bn(F.conv2d(h, sd[p + "_expand_conv.weight"]), p + "_bn0"))
                    w = sd[p + "_depthwise_conv.weight"]
                    h = F.relu6(bn(F.conv2d(same_pad(h, k, st), w, stride=st, groups=w.shape[0]), p + "_bn1"))
                    h = bn(F.conv2d(h, sd[p + "_project_conv.weight"]), p + "_bn2")
                    x = x + h if st == 1 and cin == cout else h
                    cin, b = cout, b + 1
            x = F.relu6(bn(F.conv2d(x, sd["_conv_head.weight"]), "_bn1"))
            return F.linear(x.mean((2, 3)), sd["_fc.weight"], sd["_fc.bias"])

    net = Lite0()
    net.sd = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}
    return torch, net


def test_lite0_port_matches_the_reference_model(tmp_path):
    from skimage import data

    from fermap_utils import efficientnet_lite as L

    torch = _import_torch()
    state = L.read_torch_legacy(L.torch_weights_path())
    official = torch.load(L.torch_weights_path(), map_location="cpu", weights_only=False)
    assert set(state) == set(official)
    for k, v in official.items():
        np.testing.assert_array_equal(state[k], v.numpy())  # our torch-free reader reads the file exactly
    _, ref = _torch_reference(state)
    keras_model = L.build()
    keras_model.load_weights(L.imagenet_weights_file(tmp_path))
    for image, expected in ((data.chelsea(), CATS), (data.coffee(), COFFEE)):
        rgb = cv2.resize(image, (224, 224), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        x = ((rgb - L.IMAGENET_MEAN) / L.IMAGENET_STD).astype(np.float32)
        ours = np.asarray(keras_model(x[None]))[0]
        with torch.no_grad():
            theirs = ref(torch.from_numpy(x.transpose(2, 0, 1)[None].copy())).numpy()[0]
        np.testing.assert_allclose(ours, theirs, atol=1e-3)
        top5 = np.argsort(-ours)[:5]
        np.testing.assert_array_equal(top5, np.argsort(-theirs)[:5])
        assert top5[0] in expected  # the weights are real ImageNet weights


def test_pretrained_lite0_differs_from_scratch_only_in_weights():
    a = M.build_network("EfficientNetLite0", size=64)
    b = M.build_network("EfficientNetLite0Scratch", size=64)
    assert a.pretrained and not b.pretrained
    assert M.count_params(a.model) == M.count_params(b.model)
    assert [w.shape for w in a.model.weights] == [w.shape for w in b.model.weights]
