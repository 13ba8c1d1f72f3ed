"""The README's pictures of the shipped model, remade with the command printed above each
one (run from docs/, as the README says) and compared with the committed PNG, so a
stale picture fails the suite."""
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minicnn import assets

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
# "`python3 ../tools/TOOL.py ... --out NAME.png`" then, within a few lines, "![...](docs/NAME.png)"
FIGURES = re.findall(r"`(python3 \.\./tools/\w+\.py [^`]*--out (\w+\.png))`[^!]{0,400}"
                     r"!\[[^\]]*\]\(docs/\2\)", README)
pytestmark = pytest.mark.skipif(not assets.DEFAULT_MODEL.is_file(),
                                reason="the shipped model is not in weights/")


def test_the_readme_has_its_pictures():
    names = {name for _, name in FIGURES}
    assert {"saliency.png", "deconv.png", "localize.png", "class_model.png"} <= names, names


@pytest.mark.parametrize("command, name", FIGURES, ids=[name for _, name in FIGURES])
def test_readme_picture_is_what_its_command_draws(command, name, tmp_path):
    args = shlex.split(command)
    args[args.index("--out") + 1] = str(tmp_path / name)
    r = subprocess.run([sys.executable, *args[1:]], cwd=ROOT / "docs", capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    made = np.asarray(Image.open(tmp_path / name).convert("RGB"), np.int16)
    shipped = np.asarray(Image.open(ROOT / "docs" / name).convert("RGB"), np.int16)
    assert made.shape == shipped.shape
    differ = np.abs(made - shipped).max(axis=2) > 8
    # text rendering may differ by a few pixels between Pillow versions; a stale picture
    # (another model, another method) differs almost everywhere
    assert differ.mean() < 0.002, f"{name}: {differ.mean():.2%} of the pixels differ"
