"""The runnable examples of docs/: each page's fenced python blocks run as one script, so
the documentation cannot drift from the code."""
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"


def python_blocks(page):
    """The code of every ```python fenced block of a markdown page, in order."""
    return re.findall(r"^```python\n(.*?)^```", page.read_text(encoding="utf-8"), re.S | re.M)


@pytest.mark.parametrize("name", ["float64.md"])
def test_docs_example_runs(name, capsys):
    blocks = python_blocks(DOCS / name)
    assert blocks, f"docs/{name} has no python block"
    exec(compile("\n".join(blocks), str(DOCS / name), "exec"), {"__name__": "__docs__"})
    assert "gradient vs finite differences" in capsys.readouterr().out
