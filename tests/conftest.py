"""Shared fixtures for the engine-core suite.

- hypothesis profiles: "ci" (default; real randomness, no deadline, modest example
  counts, failing examples printed as reproducible blobs) and "thorough" (many more
  examples). Pick with HYPOTHESIS_PROFILE=thorough.
- ``backend``: every property test that takes it runs on NumPy ("cpu") and again on
  CuPy ("cuda") when a GPU is present, so the GPU suite is the CPU suite run again.
- ``two_threads``: minicnn's thread pool at two workers for one test.
"""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# Tests compare results across processes bit for bit (a tool run twice, records from one
# worker or two): under the default policy each process would time the conv algorithms
# and might pick differently for a near tie. The suite runs the fixed shape rule; the
# measuring policy has tests of its own (tests/functional/test_conv_choice.py).
os.environ["MINICNN_CONV"] = "rule"
os.environ["MINICNN_CONV_WISDOM"] = "off"      # and nothing written to ~/.cache

import minicnn  # noqa: E402

settings.register_profile(
    "ci", deadline=None, max_examples=40, derandomize=False, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "thorough", deadline=None, max_examples=500, derandomize=False, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

CUDA = minicnn.cuda_available()


@pytest.fixture(scope="session", params=[
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not CUDA, reason="no CUDA GPU / CuPy")),
])
def backend(request):
    """'cpu' or 'cuda'."""
    return request.param


@pytest.fixture(scope="session")
def xp(backend):
    if backend == "cpu":
        return np
    import cupy
    return cupy



@pytest.fixture
def two_threads():
    """minicnn's thread pool at two workers for the test (whatever the machine has)."""
    from minicnn import threads
    previous = threads.set_threads(2)
    yield
    threads.set_threads(previous)
