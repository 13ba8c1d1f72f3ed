"""What the tools print goes through :func:`protect`: control characters that a file
could carry in a class name, a layer name or a key (escape sequences that retitle or clear
the terminal, backspaces, C1 codes) are shown as ``\\xNN`` instead of acting. Newlines,
tabs and carriage returns (progress bars) pass."""
import re
import sys

_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def escape_controls(text):
    """``text`` with every terminal control character but \\n, \\t and \\r as \\xNN."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))


class EscapingWriter:
    """A text stream that escapes control characters before writing to ``stream``."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        return self._stream.write(escape_controls(text))

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def protect():
    """Wrap sys.stdout and sys.stderr (once) so nothing printed can drive the terminal."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, EscapingWriter):
            setattr(sys, name, EscapingWriter(stream))
