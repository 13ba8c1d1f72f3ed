"""Start and stop the explorer's HTTP server (Werkzeug's threaded WSGI server)."""
import threading

from werkzeug.serving import make_server

from .app import DEFAULT_MAX_UPLOAD, create_app


def _listening_server(host, port, app):
    """Werkzeug's threaded server on host:port, or OSError. Werkzeug itself prints two
    lines and exits the process when the port is taken, so the port is tried first with
    a socket of our own (bound and closed at once) and a taken one said in one line."""
    import errno
    import socket
    taken = OSError(errno.EADDRINUSE, f"port {port} is in use by another program (choose "
                                      "another with --port, or 0 for any free one)")
    if port:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as Werkzeug
            try:
                probe.bind((host, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise taken from None
                raise
    try:
        return make_server(host, port, app, threaded=True)
    except SystemExit:      # taken between the probe and Werkzeug's own bind
        raise taken from None


class ExplorerServer:
    """A threaded server for ``explorer`` on host:port (port 0: a free one).

    ``url`` is where it listens; :meth:`serve_forever` blocks (Ctrl-C ends it),
    :meth:`start` serves from a daemon thread (tests), :meth:`stop` ends both and
    closes the explorer."""

    def __init__(self, explorer, host="127.0.0.1", port=8000, max_upload=DEFAULT_MAX_UPLOAD):
        self.explorer = explorer
        self.app = create_app(explorer, max_upload)
        self._server = _listening_server(host, port, self.app)
        self._server.daemon_threads = True      # a slow request never holds up the exit
        self.host, self.port = host, self._server.server_port
        self._thread = None

    @property
    def url(self):
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def serve_forever(self):
        try:
            self._server.serve_forever()
        finally:
            self._close()

    def start(self):
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="explore-server")
        self._thread.start()
        return self

    def stop(self):
        if self._thread is not None:      # shutdown() waits for a running serve_forever
            self._server.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._close()

    def _close(self):
        self._server.server_close()
        self.explorer.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
