"""Per-layer summary of a Net: output shape, parameters, multiply-adds, receptive field.

Receptive field (one output unit's window on the input, in input pixels), layer by layer::

    size_out = size_in + (kernel - 1) * jump_in        jump_out = jump_in * stride

starting from size 1, jump 1 at the input. Layers after a Flatten see the whole input
(size None). Multiply-adds: conv ``O*Ho*Wo * C*k*k``, linear ``in*out``; ReLU, pooling,
flatten and dropout count none (comparisons, not multiply-adds). Biases are not counted.

VGG16 at 224x224 (Simonyan & Zisserman 2014): 138,357,544 parameters, about 15.5 G multiply-adds,
receptive field of pool5 212 pixels with jump 32.
"""
from collections import OrderedDict


def summarize(net, input_shape):
    """net, input_shape (C, H, W) -> list of OrderedDict rows, one per layer, with keys
    name, type, output_shape, params, macs, rf_size (None: the whole input), rf_jump."""
    shapes = net.shapes(tuple(int(s) for s in input_shape))
    rows, size, jump = [], 1, 1
    for name, layer in net:
        out = shapes[name]
        params = int(sum(p.size for p in layer.params.values()))
        macs = 0
        if layer.kind == "conv2d":
            o, ho, wo = out
            macs = o * ho * wo * layer.in_channels * layer.kernel_size ** 2
        elif layer.kind == "linear":
            macs = layer.in_features * layer.out_features
        if layer.kind in ("conv2d", "maxpool2d") and size is not None:
            size += (layer.kernel_size - 1) * jump
            jump *= layer.stride
        elif layer.kind in ("flatten", "linear", "global_avgpool"):
            size = None
        rows.append(OrderedDict(name=name, type=layer.kind, output_shape=tuple(out),
                                params=params, macs=int(macs), rf_size=size,
                                rf_jump=jump if size is not None else None))
    return rows


def totals(rows):
    """{'params': ..., 'macs': ...} over all rows."""
    return {"params": sum(r["params"] for r in rows), "macs": sum(r["macs"] for r in rows)}


def human(n):
    """15470264320 -> '15.47 G'."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return str(n)


def format_table(rows):
    """Rows -> aligned text table with a totals line."""
    header = ("layer", "type", "output", "params", "mult-adds", "RF", "jump")
    body = []
    for r in rows:
        body.append((r["name"], r["type"], "x".join(map(str, r["output_shape"])),
                     f"{r['params']:,}", human(r["macs"]) if r["macs"] else "-",
                     "all" if r["rf_size"] is None else str(r["rf_size"]),
                     "-" if r["rf_jump"] is None else str(r["rf_jump"])))
    t = totals(rows)
    foot = ("total", "", "", f"{t['params']:,}", human(t["macs"]), "", "")
    widths = [max(len(row[i]) for row in [header, foot] + body) for i in range(len(header))]
    right = {3, 4, 5, 6}

    def line(row):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(row, widths))).rstrip()
    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule] + [line(r) for r in body] + [rule, line(foot)])
