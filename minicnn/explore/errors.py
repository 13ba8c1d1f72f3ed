"""The explorer's refusals: a request error with its HTTP status, and the one line that
reports running out of memory."""
import re


class RequestError(ValueError):
    """A request the explorer refuses; ``status`` is the HTTP code (400, 404, 503)."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


def out_of_memory_line(exc, what, hint=""):
    """One line for a MemoryError (NumPy's says "Unable to allocate 12.0 GiB for an
    array with shape (...) and data type float32"): what needed the memory, how much
    the failed allocation asked for, and what to do."""
    size = re.search(r"allocate\s+([0-9.]+\s*[KMGTPE]?i?B)", str(exc))
    asked = f" (an array of {size.group(1)} could not be allocated)" if size else ""
    return f"out of memory: {what} needs more memory than is free{asked}" + \
        (f"; {hint}" if hint else "")

