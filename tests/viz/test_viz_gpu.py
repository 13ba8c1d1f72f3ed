"""The visualisation functions give the same answers on CuPy (skipped without a GPU)."""
import numpy as np
import pytest

import minicnn
from minicnn.viz import class_model, saliency, tencrop_saliency, unit_reconstruction

from conftest import run_tool, tiny_vgg

pytestmark = pytest.mark.skipif(not minicnn.cuda_available(), reason="no CUDA GPU / CuPy")


def pair():
    return tiny_vgg(), tiny_vgg().to("cuda")


def test_saliency_cpu_equals_cuda():
    cpu, gpu = pair()
    x = np.random.default_rng(0).standard_normal((3, 3, 16, 16)).astype(np.float32)
    for rule in minicnn.RULES:
        a, b = saliency(cpu, x, rule=rule, smoothgrad=3), saliency(gpu, x, rule=rule, smoothgrad=3)
        assert isinstance(b.signal, np.ndarray)
        np.testing.assert_array_equal(a.classes, b.classes)
        np.testing.assert_allclose(a.signal, b.signal, rtol=1e-3, atol=1e-5)
    frame = np.random.default_rng(1).standard_normal((3, 20, 21)).astype(np.float32)
    np.testing.assert_allclose(tencrop_saliency(cpu, frame).map, tencrop_saliency(gpu, frame).map,
                               rtol=1e-3, atol=1e-5)


def test_every_method_of_the_registry_cpu_equals_cuda():
    from minicnn.viz.attribution import METHODS, MethodSettings, attribute
    cpu, gpu = pair()
    x = np.random.default_rng(3).standard_normal((2, 3, 16, 16)).astype(np.float32)
    settings = MethodSettings(ig_steps=4, smoothgrad=2)
    for name in METHODS:
        (sa, ma), (sb, mb) = (attribute(cpu, x, [0, 1], name, settings),
                              attribute(gpu, x, [0, 1], name, settings))
        assert isinstance(sb, np.ndarray) and isinstance(mb, np.ndarray), name
        np.testing.assert_allclose(sa, sb, rtol=1e-3, atol=1e-4, err_msg=name)
        np.testing.assert_allclose(ma, mb, rtol=1e-3, atol=1e-4, err_msg=name)


def test_unit_reconstruction_cpu_equals_cuda():
    cpu, gpu = pair()
    x = np.random.default_rng(2).standard_normal((2, 3, 16, 16)).astype(np.float32)
    a, b = unit_reconstruction(cpu, x, "relu2_1"), unit_reconstruction(gpu, x, "relu2_1")
    np.testing.assert_array_equal(a.channels, b.channels)
    for rule in minicnn.RULES:
        np.testing.assert_allclose(a.signals[rule], b.signals[rule], rtol=1e-3, atol=1e-5)


def test_class_model_cpu_equals_cuda():
    cpu, gpu = pair()
    kw = dict(steps=6, step=0.1, lam=0.01, jitter=1, blur_every=2, norm_pct=5, seed=1)
    a, b = class_model(cpu, [0, 2], **kw), class_model(gpu, [0, 2], **kw)
    np.testing.assert_allclose(a.x, b.x, rtol=1e-2, atol=1e-3)


def test_tools_on_cuda(model_file, image_files, tmp_path):
    import importlib.util
    tools = [("saliency", []), ("deconv", []), ("class_model", ["--steps", "3"])]
    if importlib.util.find_spec("maxflow") is not None:
        tools.append(("localize", []))
    for tool, extra in tools:
        r = run_tool(tool, "--weights", model_file, "--device", "cuda", *extra,
                     *([] if tool == "class_model" else ["--image", image_files["small"]]),
                     cwd=tmp_path)
        assert r.returncode == 0, (tool, r.stderr)
        assert (tmp_path / f"{tool}.png").is_file()
