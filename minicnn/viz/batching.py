"""How many examples a batch may hold: the visualisations split their work (class models,
crops, SmoothGrad's noisy copies) into batches whose activations fit a memory budget, so
a VGG16 with 1000 classes runs in bounded memory like the shipped 10-class model."""
import numpy as np

# measured: a VGG16 gradient pass grows by about 1.4x the bytes of all its layers' outputs
# per extra image (caches, signals and recycled buffers together)
BYTES_PER_OUTPUT_BYTE = 1.5


def bytes_per_example(net, input_shape=None):
    """Estimated bytes one more example of ``input_shape`` (C, H, W; default the net's
    input) adds to a forward + backward pass of ``net``."""
    itemsize = np.dtype(net.dtype).itemsize
    shape = net.input_shape if input_shape is None else tuple(input_shape)
    outputs = sum(int(np.prod(s)) for s in net.shapes(shape).values())
    return int(BYTES_PER_OUTPUT_BYTE * itemsize * outputs)


def examples_per_batch(net, budget_bytes, input_shape=None):
    """The most examples (at least 1) whose passes fit ``budget_bytes``."""
    return max(1, int(budget_bytes // max(bytes_per_example(net, input_shape), 1)))
