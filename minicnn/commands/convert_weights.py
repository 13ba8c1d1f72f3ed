"""Convert public VGG weights to a minicnn model file.

    python tools/convert_weights.py SRC DST.h5 [--format auto|torchvision|keras|caffe]
                                    [--arch vgg16|vgg19|auto|CONFIG] [--classes FILE]

SRC: a torch.save'd VGG state_dict (zip, legacy or tar container, e.g. torchvision's
vgg16-397923af.pth), a Keras HDF5 weights file (vgg16_weights_tf_dim_ordering_tf_kernels
[_notop].h5) or a Caffe .caffemodel (VGG_ILSVRC_16_layers.caffemodel). The format is
detected from the content; the output records the preprocessing that the source expects
and the class names (ImageNet's for 1000 outputs).

--arch CONFIG lists conv widths and pools, e.g. 64,64,M,128,128,M; with auto, pools in a
torch state_dict are inferred from gaps in the features.N indices (see
minicnn/convert/torch_map.py).

Errors: one line on stderr, exit status 1, and no output file (Ctrl-C: exit status 130).
"""
import os
import sys

from minicnn.commands import cli


def main(argv=None):
    parser = cli.parser("convert_weights.py", __doc__.split("\n\n")[0])
    parser.add_argument("src", help="weights file (torch, Keras HDF5 or Caffe)")
    parser.add_argument("dst", help="output minicnn model file (.h5)")
    parser.add_argument("--format", default="auto",
                        choices=["auto", "torchvision", "keras", "caffe"])
    parser.add_argument("--arch", default="auto",
                        help="vgg16, vgg19, auto (default) or a config like 64,64,M,128,M")
    parser.add_argument("--classes", help="class names, one per line (default: ImageNet's "
                                          "for 1000 outputs, else class_0 ...)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    from minicnn.convert import ConvertError, convert_file
    if os.path.abspath(args.src) == os.path.abspath(args.dst):
        raise ConvertError("DST is the same file as SRC")
    cli.checked_output(args.dst, (".h5", ".hdf5"), "DST")
    net, meta = convert_file(args.src, args.dst, args.format, args.arch, args.classes,
                             quiet=args.quiet)
    source = meta["source"]
    print(f"{args.src} ({source['format']}, {source['container']}, {source['arch']}) -> "
          f"{args.dst}: {len(net)} layers, {net.num_parameters():,} parameters, "
          f"{len(meta['class_names'])} classes, input {meta['preprocessing']['input_size']} "
          f"{meta['preprocessing']['channel_order']}")
    return 0


def entry():
    """The console command ``minicnn-convert`` (and tools/convert_weights.py); Ctrl-C
    leaves nothing written (saving is atomic)."""
    return cli.run(main, "convert_weights.py")


if __name__ == "__main__":
    sys.exit(entry())
