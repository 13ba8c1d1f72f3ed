"""How tests start child processes.

Children that tests stop with a signal start with the default dispositions: a shell's
background job (or nohup) hands its children SIGINT / SIGHUP ignored, and the test would
then see a run that the signal could not stop. Children that might hang or allocate run
under a time and address-space limit, so a regression fails the test instead of
swapping the machine."""
import resource
import signal
import subprocess


def default_dispositions():
    """preexec_fn for subprocess: SIGINT, SIGTERM and SIGHUP act as they do by default."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


def limited_run(args, timeout=20, memory=1 << 30, cwd=None):
    """Run ``args`` (a Python command line) with an address-space limit of ``memory``
    bytes and a timeout -> CompletedProcess (text)."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    return subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                          preexec_fn=limit, cwd=cwd)
