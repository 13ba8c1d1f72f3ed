"""--scheduler: a bad value is refused in one line before any work, and every network step
has a deadline: a peer that accepts and never answers, one that answers garbage and a
port where nothing listens each end in one line, never a hang."""
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from conftest import TOOL, make_box_folder

pytest.importorskip("dask.distributed")


def evaluate(*args, timeout=120):
    return subprocess.run([sys.executable, TOOL, "localize", "--no-progress", *args],
                          capture_output=True, text=True, timeout=timeout)


class Peer:
    """A TCP server on 127.0.0.1 that accepts and then stays silent or sends garbage;
    it stops with the test (daemon thread, socket closed)."""

    def __init__(self, answer=b""):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.answer, self.conns, self.running = answer, [], True
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.conns.append(conn)
            if self.answer:
                conn.sendall(self.answer)

    def close(self):
        self.running = False
        for c in self.conns:
            c.close()
        self.sock.close()


@pytest.mark.parametrize("value", ["", "inproc://x", "tcp://127.0.0.1:99999", "127.0.0.1:8786",
                                   "tcp://host:port", "tcp://a b:1"])
def test_a_bad_scheduler_value_is_refused_before_any_work(tmp_path, value):
    r = evaluate("--scheduler", value, "--out", str(tmp_path / "o"), timeout=60)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "expected tcp://HOST:PORT" in lines[0], r.stderr
    assert not (tmp_path / "o").exists()


def test_a_silent_peer_is_given_up_on_at_the_deadline():
    from minicnn.evaluate.runner import dask_client
    peer = Peer()
    try:
        start = time.monotonic()
        with pytest.raises(ValueError, match="no Dask scheduler answered within 2 s"):
            dask_client(scheduler=f"tcp://127.0.0.1:{peer.port}", deadline_s=2)
        assert time.monotonic() - start < 10
    finally:
        peer.close()


@pytest.mark.parametrize("answer", [b"\xff" * 64, b"\x00" * 8 + b"\xff" * 8 + b"junk" * 20])
def test_a_peer_answering_garbage_gives_one_line(tmp_path, answer):
    root, synsets, _ = make_box_folder(tmp_path, count=1)
    peer = Peer(answer)
    try:
        r = evaluate("--data", str(root), "--synsets", str(synsets), "--methods", "gradient",
                     "--scheduler", f"tcp://127.0.0.1:{peer.port}", "--out", str(tmp_path / "o"),
                     timeout=90)
    finally:
        peer.close()
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "no Dask scheduler" in lines[0] and "out of memory" not in lines[0]
    # the run recorded nothing, so the same command may simply be run again
    assert not (tmp_path / "o" / "records.jsonl").exists()


def test_nothing_listening_is_said_at_once(tmp_path):
    root, synsets, _ = make_box_folder(tmp_path, count=1)
    with socket.socket() as s:        # a port that was free a moment ago
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    r = evaluate("--data", str(root), "--synsets", str(synsets), "--scheduler",
                 f"tcp://127.0.0.1:{port}", "--out", str(tmp_path / "o"))
    assert r.returncode == 1 and "cannot connect (Connection refused)" in r.stderr, r.stderr
    assert time.monotonic() - start < 20
    # a later run without --resume is not refused for the settings file left behind
    r = evaluate("--data", str(root), "--synsets", str(synsets), "--methods", "gradient",
                 "--out", str(tmp_path / "o"))
    assert r.returncode == 0, r.stderr
