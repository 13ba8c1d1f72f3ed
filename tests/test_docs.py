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


README = DOCS.parent / "README.md"


def test_readme_python_api_block_runs_from_any_folder(tmp_path, monkeypatch):
    """The README's Python API block, pasted into a session started elsewhere and on a
    machine without a GPU, runs."""
    monkeypatch.chdir(tmp_path)
    block = python_blocks(README)[0]
    assert "minicnn.load(" in block
    scope = {"__name__": "__readme__"}
    exec(compile(block, str(README), "exec"), scope)
    assert scope["sal"].map.shape == (1, 64, 64) and len(scope["box"]) == 4
    assert (tmp_path / "copy.h5").is_file()
