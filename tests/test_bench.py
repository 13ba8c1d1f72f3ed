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
