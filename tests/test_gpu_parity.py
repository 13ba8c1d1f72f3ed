"""NumPy vs CuPy parity for every pass: forward, the three backward rules, parameter
gradients and max-pool switches. Skipped when no GPU/CuPy is present. (Every property
test taking the ``backend`` fixture also runs on CuPy; these compare the two directly.)"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minicnn
import minicnn.functional as F
from oracles import RULES, build_net, draw_input, draw_upstream, net_specs, to_np

CUDA = minicnn.cuda_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="no CUDA GPU / CuPy")


def close32(a, b, what):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(1.0, float(np.abs(b).max(initial=0.0)))
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * scale, err_msg=what)


@pytest.mark.skipif(CUDA, reason="a GPU is present")
def test_cuda_without_gpu_is_a_clear_error():
    net = minicnn.Net([("r", minicnn.ReLU())])
    with pytest.raises(RuntimeError, match="CuPy"):
        net.to("cuda")
    with pytest.raises(RuntimeError, match="CuPy"):
        minicnn.to_device(np.zeros(2), "cuda")


@needs_cuda
@given(spec=net_specs(relu="random", batch=(1, 3)))
def test_every_pass_matches_between_numpy_and_cupy(spec):
    cpu, gpu = build_net(spec, "cpu"), build_net(spec, "cuda")
    x = draw_input(spec)
    y_cpu = cpu.forward(x)
    y_gpu = gpu.forward(x)
    assert minicnn.get_array_module(y_gpu) is not np, "CuPy net must return CuPy arrays"
    close32(to_np(y_gpu), y_cpu, "forward")
    g = draw_upstream(spec, y_cpu.shape)
    for rule in RULES:
        close32(to_np(gpu.backward(g, rule=rule)), cpu.backward(g, rule=rule), rule)
    cpu.backward(g, param_grads=True)
    gpu.backward(g, param_grads=True)
    for (key, lc, p), (_, lg, _) in zip(cpu.parameters(), gpu.parameters()):
        close32(to_np(lg.grads[p]), lc.grads[p], f"grad {key}")


@needs_cuda
@pytest.mark.parametrize("ties", [False, True])
@given(data=st.data())
def test_maxpool_switches_match_between_numpy_and_cupy(ties, data):
    import cupy
    k = data.draw(st.integers(1, 4))
    s = data.draw(st.integers(1, k + 1))
    p = data.draw(st.integers(0, k // 2))
    h, w = data.draw(st.integers(k, 9)), data.draw(st.integers(k, 9))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x = (rng.integers(-2, 2, (2, 3, h, w)).astype(np.float32) if ties
         else rng.standard_normal((2, 3, h, w)).astype(np.float32))
    y_c, sw_c = F.maxpool2d_forward(x, k, s, p)
    y_g, sw_g = F.maxpool2d_forward(cupy.asarray(x), k, s, p)
    np.testing.assert_array_equal(to_np(y_g), y_c)
    np.testing.assert_array_equal(to_np(sw_g), to_np(sw_c))
    dy = rng.standard_normal(y_c.shape).astype(np.float32)
    np.testing.assert_array_equal(to_np(F.maxpool2d_backward(cupy.asarray(dy), sw_g, x.shape, k, s, p)),
                                  F.maxpool2d_backward(dy, sw_c, x.shape, k, s, p))


@needs_cuda
def test_net_to_cuda_and_back_and_load_on_cuda(tmp_path):
    net = minicnn.vgg_from_config([4, "M"], num_classes=3, input_size=(6, 6), fc_sizes=(5,))
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 6)).astype(np.float32)
    y = net.forward(x)
    net.to("cuda")
    assert net.device == "cuda"
    close32(to_np(net.forward(x)), y, "forward on cuda")
    sd = net.state_dict()
    assert all(isinstance(v, np.ndarray) for v in sd.values())
    minicnn.save(net, tmp_path / "m.h5")
    net.to("cpu")
    np.testing.assert_array_equal(net.forward(x), y)
    back = minicnn.load(tmp_path / "m.h5", device="cuda")
    assert back.device == "cuda"
    close32(to_np(back.forward(x)), y, "loaded on cuda")
