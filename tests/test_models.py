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


def test_every_model_maps_grey_images_to_six_probabilities():
    x = np.random.default_rng(0).uniform(0, 255, (2, 48, 48, 1)).astype("float32")
    for name in ("WeiNet", "SongNet", "EfficientNetLite0Scratch", "MobileNetV3"):
        built = M.build_network(name, size=48, imagenet=False)
        p = np.asarray(built.model(x))
        assert p.shape == (2, 6) and np.allclose(p.sum(1), 1, atol=1e-5), name


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
