"""An explorer in the browser: look inside the network interactively.

Serves a local web page (Flask; plain HTML, CSS and JavaScript served by this tool,
nothing fetched from the internet):

- input: the model's sample images, an uploaded PNG/JPEG of any size (shown as the
  model's preprocessing resizes it), or a fresh cluttered canvas (shipped model; needs
  Fashion-MNIST: apt-get install dataset-fashion-mnist);
- prediction: the top-5 classes with S_c and P_c;
- saliency of any class: gradient, DeconvNet and guided backprop side by side, SmoothGrad,
  the overlay, and the weakly supervised box with its seeds and GraphCut mask;
- layers: the layer table with shapes and receptive fields; a layer's channels for the
  image; a unit's strongest position, receptive field, its three reconstructions and
  its top-activating crops among the model's samples;
- class models: a gallery of the picked classes (all of a small model's; a class picker
  for a large one), computed in the background.

Every picture downloads as PNG, and each section shows the command line of the tool that
writes the same picture. Open the printed address in a browser; Ctrl-C stops the server.

Examples:
    python3 tools/explore.py                       # shipped model, http://127.0.0.1:8000/
    python3 tools/explore.py --weights vgg16.h5 --port 8080 --device cuda
Python: minicnn.explore.server.ExplorerServer(minicnn.explore.core.Explorer(net)).
"""
import argparse
import signal
import sys

from minicnn.commands import cli

PROG = "explore.py"


def port_type(text):
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535, got {text!r}")
    return value


port_type.__name__ = "a port number 0-65535"


def stop_on_signal(signum, frame):
    raise KeyboardInterrupt     # Werkzeug's serve_forever returns on it; then we clean up


def build_parser():
    p = cli.parser(PROG, __doc__)
    cli.add_model_args(p)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on; the default serves this machine only (use "
                        "0.0.0.0 to let other machines in: the page has no login)")
    p.add_argument("--port", type=port_type, default=8000, help="port to listen on (0: any free one)")
    p.add_argument("--max-upload-mb", type=cli.positive_float, default=16.0,
                   help="largest image upload accepted, in MB (larger: HTTP 413)")
    p.add_argument("--replicas", type=cli.positive_int, default=2,
                   help="requests computed at once (each holds its own layer caches)")
    p.add_argument("--blas-threads", type=cli.positive_int, default=1,
                   help="threads of each BLAS call. 1 keeps the page responsive: requests "
                        "and the class-model gallery run side by side, minicnn spreads its "
                        "convolutions over the cores itself, and OpenBLAS threads that wait "
                        "for busy cores made the 64x64 model's saliency 5-15x slower on a "
                        "loaded 2-core machine")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        from minicnn.explore.core import Explorer
        from minicnn.explore.server import ExplorerServer
    except ImportError as exc:
        raise ImportError(f"{exc}; install the explorer's packages with pip install -e "
                          "'.[explore]'", name=exc.name) from None
    from threadpoolctl import threadpool_limits
    threadpool_limits(limits=args.blas_threads, user_api="blas")   # for the whole process
    net = cli.load_net(args)
    explorer = Explorer(net, weights=args.weights, replicas=args.replicas)
    try:
        server = ExplorerServer(explorer, args.host, args.port,
                                int(args.max_upload_mb * 1024 * 1024))
    except OSError as exc:
        explorer.close()
        raise OSError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    signal.signal(signal.SIGTERM, stop_on_signal)     # stop as cleanly as on Ctrl-C
    print(f"minicnn explorer: {server.url}  (model: {explorer.model_info()['model']}, "
          f"device {net.device}; Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()      # Werkzeug's loop returns on Ctrl-C
    except KeyboardInterrupt:
        pass
    print("explore.py: stopped", flush=True)
    return 0


def entry():
    """The console command ``minicnn-explore`` (and tools/explore.py)."""
    return cli.run(main, PROG)


if __name__ == "__main__":
    sys.exit(entry())
