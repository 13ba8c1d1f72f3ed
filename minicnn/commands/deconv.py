"""Zeiler & Fergus reconstruction of one unit with each backward rule (Simonyan et al.
2013, Sect. 4).

Runs the image up to --layer, keeps only the strongest activation of --channel (every
other activation of the layer set to zero) and projects it back to the image with
net.backward(..., start=layer) under the three rules: gradient (backprop), DeconvNet and
guided backprop. They share the pooling switches and the linear layers and differ only
in the ReLU rule; the picture puts them side by side (signed: grey is zero; and their
magnitude), one pair of rows per image.

Examples:
    python tools/deconv.py                                    # shipped model and sample
    python tools/deconv.py --layer relu2_1 --channel 5 --image a.png b.png
Python: minicnn.viz.unit_reconstruction(net, x, layer, channel) on a (N, C, H, W) batch.
"""
import sys


from minicnn.commands import cli


from minicnn.viz import figures
from minicnn.viz.deconv import RECONSTRUCTION, default_layer, unit_reconstruction
from minicnn.viz.inputs import load_views, resolve_layer, stack

PROG = "deconv.py"


def channel_type(text):
    if text == "top":
        return text
    return cli.nonneg_int(text)


channel_type.__name__ = "'top' or a channel index >= 0"


def build_parser():
    p = cli.parser(PROG, __doc__)
    cli.add_model_args(p)
    cli.add_image_args(p)
    p.add_argument("--layer", default=RECONSTRUCTION.layer,
                   help="any layer name, e.g. conv3_1 or relu3_1 (default: the last ReLU "
                        "before the classifier)")
    p.add_argument("--channel", type=channel_type, default=RECONSTRUCTION.channel,
                   help="channel (feature map, or unit of a fully connected layer) to "
                        "reconstruct; 'top': per image the channel with the strongest "
                        "activation")
    p.add_argument("--zoom", action="store_true", default=RECONSTRUCTION.zoom,
                   help="crop every panel to where the reconstruction reaches (the unit's "
                        "effective receptive field), as Zeiler & Fergus show patches")
    p.add_argument("--out", metavar="PNG", default="deconv.png",
                   help="output picture: input | gradient | DeconvNet | guided")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    out = cli.checked_output(args.out, (".png",), "--out")
    net = cli.load_net(args)
    layer = resolve_layer(net, args.layer) if args.layer is not None else default_layer(net)
    views = [v for v, _ in load_views(net, cli.image_paths(args), "off")]
    rec = unit_reconstruction(net, stack(views), layer, args.channel)
    cli.write_png(out, figures.deconv_figure(net, views, rec, layer, args.zoom))
    cli.report(out, "reconstruction picture")
    for view, k, pos, value in zip(views, rec.channels, rec.positions, rec.values):
        print(f"{view.path}: {layer} channel {int(k)} at {pos}: activation {value:.4g}"
              + ("  (not positive: nothing to reconstruct)" if value <= 0 else ""))
    return 0


def entry():
    """The console command ``minicnn-deconv`` (and tools/deconv.py)."""
    return cli.run(main, PROG)


if __name__ == "__main__":
    sys.exit(entry())
