"""A tool writes all its outputs or none: an output that cannot be written leaves the
others, existing files included, as they were."""
import os
import subprocess
import sys

import numpy as np
import pytest

from minicnn.io import atomic_write_all

from conftest import TOOLS


def test_atomic_write_all_changes_nothing_when_one_write_fails(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("old a")

    def fail(tmp):
        raise OSError("disk full")
    with pytest.raises(OSError, match="disk full"):
        atomic_write_all([(a, lambda tmp: open(tmp, "w").write("new a")), (b, fail)])
    assert a.read_text() == "old a" and not b.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
    atomic_write_all([(a, lambda tmp: open(tmp, "w").write("new a")),
                      (b, lambda tmp: open(tmp, "w").write("b"))])
    assert a.read_text() == "new a" and b.read_text() == "b"
    with pytest.raises(ValueError, match="same file"):
        atomic_write_all([(a, None), (str(a), None)])


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any folder")
def test_unwritable_folder_is_refused_before_the_work(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    keep = tmp_path / "keep.png"
    keep.write_bytes(b"precious")
    r = subprocess.run([sys.executable, os.path.join(TOOLS, "saliency.py"), "--out", str(keep),
                        "--npy", str(ro / "x.npy")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "not writable" in r.stderr
    assert keep.read_bytes() == b"precious"


@pytest.mark.parametrize("tool, extra", [("saliency.py", "--npy"), ("localize.py", "--json"),
                                         ("class_model.py", "--npy")])
def test_failing_second_output_keeps_the_first(tmp_path, tool, extra):
    """The second output's name is an existing folder's: found before any work."""
    keep = tmp_path / "keep.png"
    keep.write_bytes(b"precious")
    second = tmp_path / ("x.json" if extra == "--json" else "x.npy")
    second.mkdir()
    args = [sys.executable, os.path.join(TOOLS, tool), "--out", str(keep), extra, str(second)]
    if tool == "class_model.py":
        args += ["--steps", "1", "--class", "0"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "is a folder" in r.stderr
    assert keep.read_bytes() == b"precious"


def test_both_outputs_written_together(tmp_path):
    out, npy = tmp_path / "s.png", tmp_path / "s.npy"
    r = subprocess.run([sys.executable, os.path.join(TOOLS, "saliency.py"), "--out", str(out),
                        "--npy", str(npy)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert out.stat().st_size > 1000 and np.load(npy).ndim == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.npy", "s.png"]


def test_a_folder_that_refuses_the_temporary_stops_before_any_write(tmp_path, monkeypatch):
    """(As for a read-only folder, which root cannot make:) the second temporary cannot
    be created, so nothing is written at all."""
    import tempfile
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("old a")
    real, calls, wrote = tempfile.mkstemp, [], []

    def mkstemp(*args, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise PermissionError(13, "Permission denied")
        return real(*args, **kw)
    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    with pytest.raises(PermissionError):
        atomic_write_all([(a, lambda tmp: wrote.append(tmp)), (b, lambda tmp: wrote.append(tmp))])
    assert wrote == [] and a.read_text() == "old a"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
