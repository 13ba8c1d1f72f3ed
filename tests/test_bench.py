"""The benchmark's report names what chose the BLAS kernel."""
import pytest

from minicnn.commands.bench import blas_kernel_note

AVX512 = "AMD EPYC, AVX-512, 2 CPUs"


def test_no_note_when_openblas_chose_its_kernel_itself():
    assert blas_kernel_note("openblas 0.3.31 (SkylakeX)", AVX512, {}) == ""


def test_a_forced_avx2_kernel_on_an_avx512_processor_says_how_to_unset_it():
    note = blas_kernel_note("openblas 0.3.31 (Haswell)", AVX512, {"OPENBLAS_CORETYPE": "Haswell"})
    assert "OPENBLAS_CORETYPE=Haswell" in note
    assert "env -u OPENBLAS_CORETYPE" in note


def test_a_forced_kernel_that_uses_avx512_is_named_without_advice():
    note = blas_kernel_note("openblas 0.3.31 (SkylakeX)", AVX512, {"OPENBLAS_CORETYPE": "SkylakeX"})
    assert "OPENBLAS_CORETYPE=SkylakeX" in note and "env -u" not in note
    note = blas_kernel_note("openblas (Haswell)", "Intel, AVX2, no AVX-512, 4 CPUs",
                            {"OPENBLAS_CORETYPE": "Haswell"})
    assert "env -u" not in note


def test_bench_photos_table_in_gradient_passes(tmp_path):
    """tools/bench_photos.py on a VGG16-shaped model: the unit row and the two box rows,
    each as a multiple of the gradient pass, written to --out."""
    import os
    import subprocess
    import sys
    from imagenet_model import imagenet_vgg16_like
    model = imagenet_vgg16_like(tmp_path / "vgg.h5")
    out = tmp_path / "bench.md"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, os.path.join(root, "tools", "bench_photos.py"),
                        "--weights", model, "--rounds", "1", "--only", "box500", "box64",
                        "--out", out], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = [line for line in out.read_text().splitlines() if line.startswith("| ")][1:]
    assert [row.split(" | ")[0] for row in rows] == [
        "| gradient pass (the model's input size, batch 1)", "| box (localize_map), 500x375 photo",
        "| box (localize_map), 64x64 canvas (shipped model)"]
    assert rows[0].split(" | ")[2] == "1.00"
    for row in rows:
        seconds, ratio, peak = (float(v) for v in row.strip("| ").split(" | ")[1:])
        assert seconds > 0 and ratio > 0 and peak > 0


def test_conv_choice_lines_say_what_was_measured():
    """The bench's conv-algorithm lines: under the rule no 'timed' wording; under
    measuring, the unmeasured convs marked, and disagreeing children said."""
    from minicnn.commands.bench import conv_choice_lines
    row = {"layer": "conv5_1", "forward": "winograd2", "backward_input": "im2col"}
    rows = [{"workload": "VGG16 gradient", "batch": 1, "ours_ms": 100.0}]
    rule = {"conv_choices": {"batch 1": [{"policy": "rule", "rows": [row]}]},
            "first_call_ms": {"batch 1": {"gradient": 200.0}}, "rows": rows}
    text = "\n".join(conv_choice_lines(rule))
    assert "conv5_1 F2/im2col" in text and "timed" not in text and "rule: '" not in text
    assert "gradient 200 ms (2.0x a later call)" in text
    other = dict(row, forward="im2col")
    measured = {"conv_choices": {"batch 1": [{"policy": "measure", "rows": [row]},
                                             {"policy": "measure", "rows": [other]}]},
                "first_call_ms": {"batch 1": {"gradient": 200.0}}, "rows": rows}
    text = "\n".join(conv_choice_lines(measured))
    assert "'rule: ' where not measured" in text and "(choices timed there)" in text
    assert "chose differently" in text


def test_profile_floors_count_each_layers_multiplies_and_bytes():
    """--profile's floors on a tiny net, counted by hand: an RGB conv (im2col: 9
    multiplies a pixel and channel pair; reads its weight), a ReLU, a pool (one switch
    byte a window), a wide conv (F(2x2): 16 per 2x2 tile; reads its 16-matrix
    transform), a linear layer. Rates of 1e9 make a floor of B bytes B / 1e6 ms."""
    from minicnn.commands.bench_children import layer_floors
    from minicnn.functional import conv_choice
    from minicnn.layers import Conv2d, Flatten, Linear, MaxPool2d, ReLU
    layers = [("c1", Conv2d(3, 16, 3, 1, 1)), ("r1", ReLU()), ("p1", MaxPool2d(2)),
              ("c2", Conv2d(16, 16, 3, 1, 1)), ("f", Flatten()), ("l", Linear(256, 10))]
    shapes = [(2, 16, 8, 8), (2, 16, 8, 8), (2, 16, 4, 4), (2, 16, 4, 4), (2, 256), (2, 10)]
    with conv_choice.policy("rule"):
        rows = dict(zip([n for n, _ in layers],
                        layer_floors(layers, (2, 3, 8, 8), shapes, 1e9, 1e9)))
    approx = lambda v: pytest.approx(v, rel=1e-12)
    # conv 3 -> 16 at 8x8, batch 2: 9 * 2*64 * 3*16 multiplies
    assert rows["c1"]["forward_gemm_ms"] == approx(2 * 9 * 128 * 48 / 1e6)
    assert rows["c1"]["forward_memory_ms"] == approx((4 * 2 * 3 * 64 + 4 * 2 * 16 * 64
                                                      + 4 * 9 * 48) / 1e6)
    assert rows["r1"]["forward_memory_ms"] is None                 # inside the conv
    assert rows["r1"]["backward_memory_ms"] == approx(3 * 4 * 2 * 16 * 64 / 1e6)
    assert rows["p1"]["forward_memory_ms"] == approx((8192 + 2048 + 512) / 1e6)
    assert rows["p1"]["forward_gemm_ms"] is None
    # conv 16 -> 16 at 4x4: 2 * 2x2 tiles of 16 multiplies per channel pair
    assert rows["c2"]["forward_gemm_ms"] == approx(2 * 16 * 8 * 256 / 1e6)
    assert rows["c2"]["backward_memory_ms"] == approx((2048 + 2048 + 4 * 16 * 256) / 1e6)
    assert rows["f"] == dict.fromkeys(rows["f"])                    # no floor at all
    assert rows["l"]["backward_gemm_ms"] == approx(2 * 2 * 2560 / 1e6)
    assert rows["l"]["forward_memory_ms"] == approx((2048 + 80 + 4 * 2560) / 1e6)
