"""The ReLU's zero operand (an array laid out like the data's innermost axes, for NumPy's
SIMD loop) gives max(x, 0) bit for bit as the 0-d zero does, in every memory layout,
special values included, and cannot be written through."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minicnn.functional import into, reference

SPECIAL = np.array([np.nan, -np.nan, 0.0, -0.0, np.inf, -np.inf, 1e-45, -1e-45, 3.5, -2.0])


def layouts(base):
    """Views of one (2, 6, 5, 7) array: as is, channels-last seen as NCHW, sliced with
    steps, reversed, transposed."""
    yield base
    yield np.ascontiguousarray(base.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    yield base[:, ::2, 1:, ::3]
    yield base[::-1, :, ::-1]
    yield base.transpose(3, 1, 0, 2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(seed=st.integers(0, 2**16))
@settings(max_examples=20, deadline=None)
def test_relu_into_equals_maximum_with_a_0d_zero_bitwise(dtype, seed):
    rng = np.random.default_rng(seed)
    base = rng.choice(SPECIAL, size=(2, 6, 5, 7)).astype(dtype)
    for x in layouts(base):
        expected = np.maximum(x, dtype(0))
        got = np.empty_like(x)
        into.relu_into(x, got)
        np.testing.assert_array_equal(got, expected)
        assert (np.signbit(got) == np.signbit(expected)).all()
        assert (np.isnan(got) == np.isnan(expected)).all()
        np.testing.assert_array_equal(got, reference.relu_forward(x))
        dy = x.copy()
        back = into.relu_backward_into(dy, x, "deconvnet", out=np.empty_like(dy))
        assert (np.signbit(back) == np.signbit(expected)).all()
        np.testing.assert_array_equal(back, expected)


def test_the_zero_operand_runs_the_innermost_axes_contiguously_and_is_read_only():
    x = np.zeros((3, 224, 224, 64), np.float32).transpose(0, 3, 1, 2)   # NCHW view of NHWC
    z = into.zero_operand(x)
    assert z.shape == x.shape and not z.flags.writeable and not z.any()
    # channels, then columns (64 * 224 >= ZERO_ROW: rows and the batch axis are broadcast)
    assert z.strides == (0, 4, 0, 64 * 4)
    with pytest.raises(ValueError):
        z[0, 0, 0, 0] = 1
    assert into.zero_operand(np.zeros((), np.float32)).shape == ()


def test_no_zero_buffer_larger_than_zero_row_max():
    long = np.ones(into.ZERO_ROW_MAX + 1, np.float32)
    assert into.zero_operand(long).shape == ()                    # the scalar zero
    x = np.ones((3, 50, into.ZERO_ROW_MAX // 40), np.float32)   # rows of 1638: 50 * 1638 > max
    z = into.zero_operand(x)
    assert z.strides == (0, 0, 4)
    np.testing.assert_array_equal(into.relu_into(-x, np.empty_like(x)), 0)
