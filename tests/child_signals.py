"""Child processes that tests stop with a signal start with the default dispositions:
a shell's background job (or nohup) hands its children SIGINT / SIGHUP ignored, and the
test would then see a run that the signal could not stop."""
import signal


def default_dispositions():
    """preexec_fn for subprocess: SIGINT, SIGTERM and SIGHUP act as they do by default."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
