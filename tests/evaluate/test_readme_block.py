"""The README's evaluation example (its second python block) runs as printed, in a folder
holding the ILSVRC layout and the synsets file it names."""
import re
import shutil
from pathlib import Path

from conftest import make_box_folder

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_evaluation_block_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), re.S | re.M)
    block = next(b for b in blocks if "evaluate_item(" in b)
    _, synsets, _ = make_box_folder(tmp_path, count=3)      # tmp/ILSVRC/Data/CLS-LOC/val
    shutil.copy(synsets, tmp_path / "LOC_synset_mapping.txt")
    monkeypatch.chdir(tmp_path)
    scope = {"__name__": "__readme__"}
    exec(compile(block, str(README), "exec"), scope)
    assert len(scope["records"]) == 3
    errors = scope["summarise"](scope["records"], scope["settings"].methods)["localisation_error"]
    assert set(errors) >= {"gradient", "guided"}         # and the baselines
    assert all(0 <= errors[m]["top1"] <= 1 for m in errors)
