"""The Winograd kernel transforms a conv runs with (F(2x2) or F(4x4), of the kernel or of
its flipped, transposed kernel for the backward pass), and :class:`KernelTransforms`, which
a Conv2d layer keeps to remember them between passes."""
from ..backend import get_array_module
from ..threads import split
from .winograd import winograd_weight, winograd_weight_flipped
from .winograd4 import flipped_kernel, winograd4_weight
from .winograd_schedule import WINOGRAD_GROUPS, chunk_map
from .workspace import recycled


def transform_for(weight, dtype, kernels, flipped, f4):
    """The transform from the memo ``kernels`` when there is one, else computed."""
    if kernels is not None:
        return kernels.get(weight, dtype, flipped=flipped, f4=f4)
    return kernel_transform(weight, dtype, flipped=flipped, f4=f4)


def kernel_transform(weight, dtype, flipped=False, f4=False):
    """The Winograd transform a conv runs with: weight (O, C, 3, 3) -> U (16, O, C)
    (F(2x2)) or (36, O, C) (F(4x4)), or with ``flipped`` that of the flipped, transposed
    kernel, (16 or 36, C, O). Stored so that U's transpose, the GEMMs' right operand, is
    contiguous."""
    if f4:
        u = winograd4_weight(flipped_kernel(weight) if flipped else weight, dtype)
    else:
        u = winograd_weight(weight, dtype)
        if flipped:
            return winograd_weight_flipped(u)       # contiguous transpose already
    u_t = recycled((u.shape[0], u.shape[2], u.shape[1]), u.dtype, u)
    u_t[...] = u.transpose(0, 2, 1)
    return u_t.transpose(0, 2, 1)


class KernelTransforms:
    """Remembers the kernel transforms of a conv weight (:func:`kernel_transform`:
    F(2x2) or F(4x4), of the kernel or of its flipped, transposed kernel for the
    backward pass) between calls: visualisation runs hundreds of passes with fixed
    weights. Reused only while the weight is the same array with the same bits and the
    dtype is the same (so replacing or editing the weight in place is always seen)."""

    def __init__(self):
        self._weight = self._values = self._dtype = None
        self._transforms = {}

    def get(self, weight, dtype, flipped=False, f4=False):
        """The transform of ``weight`` (O, C, 3, 3) in ``dtype`` (promoted with the
        weight's) that :func:`kernel_transform` gives for these arguments."""
        xp = get_array_module(weight)
        dtype = xp.result_type(dtype, weight.dtype)
        if not (self._weight is weight and self._dtype == dtype and self._same_values(weight)):
            self._transforms = {}        # first, so that their arrays can be recycled
            if (self._values is not None and self._values.shape == weight.shape
                    and self._values.dtype == weight.dtype
                    and get_array_module(self._values) is xp):
                self._values[...] = weight     # its own copy, never handed out: reused
            else:
                self._values = weight.copy()
            self._weight, self._dtype = weight, dtype
        key = (flipped, f4)
        if key not in self._transforms:
            self._transforms[key] = kernel_transform(weight, dtype, flipped, f4)
        return self._transforms[key]

    def _same_values(self, weight):
        """The remembered values equal ``weight``'s bit for bit (a NaN weight is the same
        weight; -0.0 and 0.0 are not), compared as unsigned integers in slices over the
        threads. This reads the weight and its copy on every call (its cost: README,
        "Per layer"), the price of seeing in-place edits."""
        xp = get_array_module(weight)
        weight = xp.ascontiguousarray(weight)      # the copy is C-contiguous already
        size = 8 if weight.nbytes % 8 == 0 else weight.itemsize
        a = self._values.reshape(-1).view(f"u{size}")
        b = weight.reshape(-1).view(f"u{size}")
        same = chunk_map(xp)(lambda s: bool(xp.equal(a[s], b[s]).all()),
                             split(a.size, WINOGRAD_GROUPS))
        return all(same)
