"""Describe a minicnn model file: the layer table (output shape for the model's input size,
parameters, multiply-adds, receptive field size and jump), totals, preprocessing and
classes.

    python tools/info.py MODEL.h5
"""
import json
import sys

from minicnn.commands import cli


def main(argv=None):
    parser = cli.parser("info.py", __doc__.split("\n\n")[0])
    parser.add_argument("model", help="minicnn model file (.h5)")
    args = parser.parse_args(argv)

    import minicnn
    from minicnn.summary import format_table, human, summarize, totals
    net = minicnn.load(args.model)
    rows = summarize(net, net.input_shape)
    pre = net.preprocessing
    input_shape = net.input_shape
    t = totals(rows)
    print(f"{args.model}: {len(net)} layers, input {'x'.join(map(str, input_shape))}")
    print(format_table(rows))
    print(f"\nparameters: {t['params']:,}   multiply-adds: {t['macs']:,} ({human(t['macs'])}) "
          f"per {pre.input_size[0]}x{pre.input_size[1]} image")
    print(f"preprocessing: {pre.channel_order}, input_scale {pre.input_scale:g}, mean "
          f"{list(pre.mean)}, std {list(pre.std)}, resize {pre.resize}, input size "
          f"{list(pre.input_size)}")
    names = net.class_names
    if names:
        shown = ", ".join(names[:3]) + (f", ..., {names[-1]}" if len(names) > 3 else "")
        print(f"classes: {len(names)} ({shown})")
    elif rows and rows[-1]["type"] == "linear":
        print(f"classes: {net.num_classes} outputs, no class names in the file")
    else:
        print("classes: none (convolutional-only model)")
    extra = {k: v for k, v in net.meta.items() if k not in ("preprocessing", "class_names")}
    if extra:
        print(f"metadata: {json.dumps(extra, sort_keys=True)}")
    return 0


def entry():
    """The console command ``minicnn-info`` (and tools/info.py): errors are one line and
    exit status 1, usage errors exit status 2."""
    return cli.run(main, "info.py")


if __name__ == "__main__":
    sys.exit(entry())
