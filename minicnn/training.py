"""Training on minicnn's own forward/backward: softmax cross-entropy, SGD with momentum."""
import math

import numpy as np

from .backend import get_array_module, to_device, to_numpy
from .threads import parallel_map


def softmax_cross_entropy(logits, labels):
    """logits (N, K), labels (N,) ints -> (mean loss, dloss/dlogits (N, K))."""
    xp = get_array_module(logits)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_z = xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
    log_p = shifted - log_z
    n = logits.shape[0]
    rows = xp.arange(n)
    loss = -log_p[rows, labels].mean()
    grad = xp.exp(log_p)
    grad[rows, labels] -= 1.0
    return float(loss), (grad / n).astype(logits.dtype)


class SGD:
    """Minibatch SGD with (heavy-ball) momentum and L2 weight decay on weights only.

    v <- momentum * v + (grad + weight_decay * w);  w <- w - lr * v
    """

    def __init__(self, net, momentum=0.9, weight_decay=5e-4, clip_norm=None):
        self.net, self.momentum, self.weight_decay = net, float(momentum), float(weight_decay)
        self.clip_norm = clip_norm
        self.velocity = {}

    def grad_norm(self):
        """Global L2 norm of all parameter gradients."""
        total = sum(float((layer.grads[p].astype("float64") ** 2).sum())
                    for _, layer, p in self.net.parameters())
        return math.sqrt(total)

    def step(self, lr):
        # clipping the global gradient norm keeps an early large step from killing the
        # ReLUs of a net without normalisation layers
        scale = 1.0
        if self.clip_norm:
            norm = self.grad_norm()
            if norm > self.clip_norm:
                scale = self.clip_norm / norm
        for key, layer, p in self.net.parameters():
            w, g = layer.params[p], layer.grads[p]
            if scale != 1.0:
                g = g * scale
            if p == "weight" and self.weight_decay:
                g = g + self.weight_decay * w
            v = self.velocity.get(key)
            v = g if v is None else self.momentum * v + g
            self.velocity[key] = v
            layer.params[p] = w - lr * v

    def state(self):
        return {key: to_numpy(v) for key, v in self.velocity.items()}

    def load_state(self, state):
        """Momentum buffers from :meth:`state`, moved to the net's device. Each must name
        a parameter of the net and have its shape, finite float values (else ValueError)."""
        shapes = {key: layer.params[p].shape for key, layer, p in self.net.parameters()}
        velocity = {}
        for key, value in state.items():
            if key not in shapes:
                raise ValueError(f"optimiser state for {key!r}, which is not a parameter of "
                                 f"the net")
            value = np.asarray(value)
            if value.shape != shapes[key] or value.dtype.kind != "f":
                raise ValueError(f"optimiser state for {key!r} has shape {value.shape} and "
                                 f"dtype {value.dtype}, expected float {shapes[key]}")
            if not np.isfinite(value).all():
                raise ValueError(f"optimiser state for {key!r} holds NaN or infinite values")
            velocity[key] = to_device(value.astype(np.float32), self.net.device)
        self.velocity = velocity


def learning_rate(step, total_steps, base_lr, warmup_steps):
    """Linear warm-up to base_lr, then cosine decay to 0 at total_steps."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


class DataParallel:
    """One training batch split into ``threads`` even shards, each run forward and
    backward by its own replica of the net (own caches, gradients and dropout
    generators; shared parameters, see :meth:`Net.replica`) on the worker threads of
    :func:`minicnn.threads.parallel_map`; the parameter gradients are summed into the
    net's ``grads`` in shard order. Results depend on the shard count, not on how many
    threads run them.

    Why threads help on the CPU: NumPy releases the GIL inside array operations, and the
    single-threaded elementwise passes (Winograd transforms, ReLU, pooling) dominate a
    small net's step; meanwhile each BLAS call is limited to one thread, so the GEMMs of
    the shards share the cores instead of oversubscribing them. One shard (and any CuPy
    net) runs the whole batch as a plain forward and backward."""

    def __init__(self, net, threads=1):
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be an integer >= 1, got {threads!r}")
        self.net = net
        self.threads = 1 if net.device != "cpu" else threads
        self.nets = [net] + [net.replica() for _ in range(self.threads - 1)]

    def forward_backward(self, x, labels):
        """Mean softmax cross-entropy of x (N, C, H, W), labels (N,), with every
        parameter gradient in ``net.grads`` -> (loss, logits (N, K))."""
        n = len(x)
        if n < 1 or len(labels) != n:
            raise ValueError(f"forward_backward needs a non-empty batch with one label per "
                             f"example, got {n} examples and {len(labels)} labels")
        shards = min(len(self.nets), n)     # no empty shards for a batch smaller than that
        bounds = [n * s // shards for s in range(shards + 1)]

        def shard(s):
            net, lo, hi = self.nets[s], bounds[s], bounds[s + 1]
            net.train()
            logits = net.forward(x[lo:hi])
            xp = get_array_module(logits)
            loss, dlogits = softmax_cross_entropy(logits, xp.asarray(labels[lo:hi]))
            weight = (hi - lo) / n       # shard means -> the batch mean
            net.backward(dlogits * logits.dtype.type(weight), "gradient", param_grads=True,
                         input_signal=False)     # the signal at the images: not needed
            return loss * weight, logits

        results = parallel_map(shard, range(shards))
        for other in self.nets[1:shards]:
            for (_, layer), (_, twin) in zip(self.net, other):
                for p, g in twin.grads.items():
                    layer.grads[p] = layer.grads[p] + g
        xp = get_array_module(results[0][1])
        return sum(r[0] for r in results), xp.concatenate([r[1] for r in results])


def train_step(net, optimizer, x, labels, lr, parallel=None):
    """One SGD step on a batch x (N, C, H, W), labels (N,) -> (loss, correct count).
    ``parallel``: a :class:`DataParallel` of ``net`` to split the batch over threads."""
    parallel = parallel or DataParallel(net)
    if parallel.net is not net:
        raise ValueError("train_step: parallel was built for another net")
    loss, logits = parallel.forward_backward(x, labels)
    optimizer.step(lr)
    xp = get_array_module(logits)
    correct = int((logits.argmax(axis=1) == xp.asarray(labels)).sum())
    return loss, correct


def predict(net, x, batch_size=256):
    """Class scores for x (N, C, H, W) in batches, as a NumPy array (N, K)."""
    net.eval()
    out = [to_numpy(net.forward(x[i:i + batch_size])) for i in range(0, len(x), batch_size)]
    return np.concatenate(out)
