"""Every tool answers the same way: a usage error (an unknown option, a bad value) is one
line "TOOL.py: error: ... (see --help)" and exit status 2; a data error (a corrupt or
missing file) is one line "TOOL.py: error: ..." and exit status 1."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = ["saliency.py", "class_model.py", "deconv.py", "localize.py", "info.py",
         "convert_weights.py", "bench.py", "bench_photos.py", "evaluate.py", "explore.py",
         "train.py"]


def tool(name, *args, cwd):
    env = {k: v for k, v in os.environ.items() if k != "MINICNN_THREADS"}
    return subprocess.run([sys.executable, os.path.join(ROOT, "tools", name), *args],
                          capture_output=True, text=True, timeout=300, cwd=cwd, env=env)


def one_error_line(r, name):
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"{name}: error: "), lines[0]
    return lines[0]


def test_every_tool_is_listed():
    shipped = {f for f in os.listdir(os.path.join(ROOT, "tools"))
               if f.endswith(".py") and not f.startswith(("make_", "_"))}
    assert shipped <= set(TOOLS) | {"convert_weights.py"}, sorted(shipped - set(TOOLS))


@pytest.mark.parametrize("name", TOOLS)
def test_usage_error_is_exit_2(tmp_path, name):
    r = tool(name, "--no-such-option", cwd=tmp_path)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert one_error_line(r, name).endswith("(see --help)")


@pytest.fixture
def garbage(tmp_path):
    path = tmp_path / "garbage.h5"
    path.write_bytes(b"garbage, not HDF5")
    return str(path)


DATA_ERRORS = {
    "saliency.py": lambda g: ["--weights", g],
    "class_model.py": lambda g: ["--weights", g],
    "deconv.py": lambda g: ["--weights", g],
    "localize.py": lambda g: ["--weights", g],
    "info.py": lambda g: [g],
    "convert_weights.py": lambda g: [g, "out.h5"],
    "bench_photos.py": lambda g: ["--weights", g, "--only", "method_gradcam"],
    "evaluate.py": lambda g: ["localize", "--weights", g, "--out", "run"],
    "explore.py": lambda g: ["--weights", g],
    "train.py": lambda g: ["--init", g, "--data", "no-such-folder", "--run-dir", "run",
                           "--out", "m.h5"],
}


@pytest.mark.parametrize("name", sorted(DATA_ERRORS))
def test_data_error_is_exit_1(tmp_path, garbage, name):
    before = set(os.listdir(tmp_path))
    r = tool(name, *DATA_ERRORS[name](garbage), cwd=tmp_path)
    assert r.returncode == 1, (r.returncode, r.stderr)
    one_error_line(r, name)
    assert set(os.listdir(tmp_path)) <= before | {"run"}      # no output written


def test_bench_output_folder_checked_before_measuring(tmp_path):
    r = tool("bench.py", "--quick", "--out", str(tmp_path / "no" / "such" / "b"), cwd=tmp_path)
    assert r.returncode == 1
    assert "does not exist" in one_error_line(r, "bench.py")
