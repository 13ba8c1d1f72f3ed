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


def one_line(text):
    """``text`` safe for the terminal as one line: control characters (from file names or
    a file's own strings) and line breaks shown as \\xNN / \\n instead of acting."""
    return escape_controls(text).replace("\n", "\\n").replace("\r", "\\r")


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


def short(value, limit=80):
    """``repr(value)`` for a message, at most ``limit`` characters and bounded work,
    whatever the file built (a plain repr of a shared nested structure or of a huge
    integer can run for ever, or print megabytes)."""
    out, budget = [], [limit + 1]

    def put(text):
        out.append(text[:budget[0]])
        budget[0] -= len(text)

    def walk(v, depth):
        if budget[0] <= 0:
            return
        if isinstance(v, bool) or v is None or isinstance(v, float):
            put(repr(v))
        elif isinstance(v, int):
            put(repr(v) if v.bit_length() <= 128 else f"<int of {v.bit_length()} bits>")
        elif isinstance(v, (str, bytes, bytearray)):
            put(repr(v[:limit]))
        elif isinstance(v, (tuple, list, dict, set, frozenset)):
            if depth >= 4:
                put("...")
                return
            items = v.items() if isinstance(v, dict) else v
            put({tuple: "(", list: "["}.get(type(v), type(v).__name__ + "(["
                                                     if not isinstance(v, dict) else "{"))
            for n, item in enumerate(items):
                if budget[0] <= 0:
                    return
                if n:
                    put(", ")
                if isinstance(v, dict):
                    walk(item[0], depth + 1)
                    put(": ")
                    walk(item[1], depth + 1)
                else:
                    walk(item, depth + 1)
            put({tuple: ",)" if len(v) == 1 else ")", list: "]"}.get(
                type(v), "}" if isinstance(v, dict) else "])"))
        else:
            put(f"<{type(v).__name__}>")

    walk(value, 0)
    text = "".join(out)
    return text if len(text) <= limit else text[:limit - 3] + "..."
