"""The benchmark's report names what chose the BLAS kernel."""
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
