"""Text from a file never drives the terminal: the tools print control characters as
\\xNN."""
import os
import subprocess
import sys

import minicnn
from minicnn import assets
from minicnn.terminal import EscapingWriter, escape_controls

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOSTILE = "\x1b]0;pwned\x07\x1b[2J\x9b31m\bcoat"


def test_escape_keeps_text_newlines_and_carriage_returns():
    assert escape_controls("a\tb\nc\rd") == "a\tb\nc\rd"
    assert escape_controls(HOSTILE) == "\\x1b]0;pwned\\x07\\x1b[2J\\x9b31m\\x08coat"
    assert escape_controls("Ankle boot é ü 中") == "Ankle boot é ü 中"


def test_writer_escapes_what_it_writes():
    import io
    buf = io.StringIO()
    w = EscapingWriter(buf)
    w.write("x" + HOSTILE)
    w.writelines(["\x1b", "\n"])
    assert "\x1b" not in buf.getvalue() and buf.getvalue().endswith("\\x1b\n")
    assert w.getvalue() == buf.getvalue()          # other attributes pass through


def test_info_and_tools_print_hostile_class_names_escaped(tmp_path):
    net = minicnn.load(assets.default_model())
    names = list(net.class_names)
    names[0] = HOSTILE
    path = tmp_path / "hostile.h5"
    minicnn.save(net, path, {"class_names": names})
    info = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "info.py"), str(path)],
                          capture_output=True, text=True, timeout=600)
    assert info.returncode == 0, info.stderr
    assert "\\x1b]0;pwned" in info.stdout
    assert "\x1b" not in info.stdout and "\x9b" not in info.stdout and "\x07" not in info.stdout
    sal = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "localize.py"),
                          "--weights", str(path), "--class", "0", "--out",
                          str(tmp_path / "l.png")], capture_output=True, text=True, timeout=600)
    assert sal.returncode == 0, sal.stderr
    assert "\\x1b]0;pwned" in sal.stdout and "\x1b" not in sal.stdout + sal.stderr
