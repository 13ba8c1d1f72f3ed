"""tools/train.py and the Fashion-MNIST reader with bad data and bad run folders: one line,
exit 1, nothing written over a good file. A tiny IDX data set is made per test (the real
one is not needed)."""
import gzip
import os
import subprocess
import sys

import numpy as np
import pytest

from minicnn.datasets.fashion_mnist import MAX_IDX_BYTES, load_fashion_mnist

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_idx(path, magic, array, declared=None):
    shape = array.shape if declared is None else declared
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def tiny_data(folder, train_labels=None):
    rng = np.random.default_rng(0)
    folder.mkdir(exist_ok=True)
    for split, n in (("train", 32), ("t10k", 8)):
        images = rng.integers(0, 256, (n, 28, 28))
        labels = np.arange(n) % 10 if train_labels is None or split == "t10k" else train_labels
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", 0x803, images)
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", 0x801, np.asarray(labels))
    return folder


def train(tmp_path, data, *extra):
    args = [sys.executable, os.path.join(ROOT, "tools", "train.py"), "--data", str(data),
            "--run-dir", str(tmp_path / "run"), "--out", str(tmp_path / "m.h5"),
            "--config", "4,M,G", "--fc", "8", "--epochs", "1", "--train-size", "32",
            "--batch", "16", "--eval-size", "8", "--test-size", "8", "--threads", "1",
            "--warmup", "1", *extra]
    return subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=tmp_path)


def one_line(r):
    lines = [l for l in r.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    return lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished tiny run (its checkpoints stay in run/)."""
    tmp_path = tmp_path_factory.mktemp("train")
    data = tiny_data(tmp_path / "data")
    r = train(tmp_path, data)
    assert r.returncode == 0, r.stderr
    return tmp_path, data


def copy_run(trained, tmp_path):
    import shutil
    source, data = trained
    shutil.copytree(source / "run", tmp_path / "run")
    return data


@pytest.mark.parametrize("damage", ["garbage", "truncated", "no step", "wrong shape",
                                    "unknown key", "nan", "pickled"])
def test_a_bad_optimiser_state_gives_one_line(trained, tmp_path, damage):
    data = copy_run(trained, tmp_path)
    opt = tmp_path / "run" / "checkpoint_opt.npz"
    with np.load(opt) as f:
        state = {k: f[k] for k in f.files}
    key = next(k for k in state if k.startswith("v/"))
    if damage == "garbage":
        opt.write_bytes(b"\x00garbage" * 10)
    elif damage == "truncated":
        opt.write_bytes(opt.read_bytes()[:200])
    else:
        if damage == "no step":
            del state["step"]
        elif damage == "wrong shape":
            state[key] = np.zeros((3, 3), np.float32)
        elif damage == "unknown key":
            state["v/nosuch.weight"] = np.zeros(3, np.float32)
        elif damage == "nan":
            state[key] = np.full_like(state[key], np.nan)
        elif damage == "pickled":
            state[key] = np.array([{"a": 1}], dtype=object)
        with open(opt, "wb") as fh:
            np.savez(fh, **state)
    r = train(tmp_path, data, "--epochs", "2")
    assert r.returncode == 1, r.stderr
    line = one_line(r)
    assert "checkpoint_opt.npz" in line and "--no-resume" in line, line
    assert not (tmp_path / "m.h5").exists()


def test_a_corrupt_checkpoint_gives_one_line(trained, tmp_path):
    data = copy_run(trained, tmp_path)
    ckpt = tmp_path / "run" / "checkpoint.h5"
    ckpt.write_bytes(ckpt.read_bytes()[:3000])
    r = train(tmp_path, data, "--epochs", "2")
    assert r.returncode == 1, r.stderr
    assert "checkpoint.h5" in one_line(r)


def test_a_corrupt_init_model_gives_one_line(tmp_path):
    data = tiny_data(tmp_path / "data")
    bad = tmp_path / "init.h5"
    bad.write_bytes(b"not a model")
    r = train(tmp_path, data, "--init", str(bad))
    assert r.returncode == 1, r.stderr
    assert "init.h5" in one_line(r)
    assert not (tmp_path / "run" / "checkpoint.h5").exists()


def test_labels_outside_the_classes_are_refused(tmp_path):
    labels = np.arange(32) % 10
    labels[5] = 12
    data = tiny_data(tmp_path / "data", train_labels=labels)
    with pytest.raises(ValueError, match="label 12.*0-9"):
        load_fashion_mnist("train", str(data))
    r = train(tmp_path, data)
    assert r.returncode == 1, r.stderr          # a data error; 2 is for usage errors
    assert "label 12" in one_line(r)


def test_an_idx_header_declaring_too_much_is_refused_unread(tmp_path):
    # a few bytes that claim 2^32 images: refused from the header, nothing allocated
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", 0x803, np.zeros((1, 28, 28)),
              declared=(2**32 - 1, 28, 28))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", 0x801, np.zeros(1))
    with pytest.raises(ValueError, match=f"more than {MAX_IDX_BYTES} bytes"):
        load_fashion_mnist("test", str(tmp_path))


def test_an_idx_file_longer_than_declared_is_refused(tmp_path):
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", 0x803, np.zeros((3, 28, 28)),
              declared=(2, 28, 28))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", 0x801, np.zeros(2))
    with pytest.raises(ValueError, match="found more"):
        load_fashion_mnist("test", str(tmp_path))


def test_a_second_run_into_one_run_dir_is_refused_naming_the_first(tmp_path):
    import textwrap
    data = tiny_data(tmp_path / "data")
    (tmp_path / "run").mkdir()
    code = textwrap.dedent(f"""
        import sys
        from minicnn.outfolder import FolderLock
        lock = FolderLock({str(tmp_path / 'run')!r}, "x", "train.py --epochs 99")
        print("locked", flush=True)
        sys.stdin.read()
        """)
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        line = one_line(train(tmp_path, data))
        assert "in use by another run" in line and "train.py --epochs 99" in line
        assert sorted(os.listdir(tmp_path / "run")) == [".minicnn.lock"]
    finally:
        holder.stdin.close()
        holder.wait(30)
    assert train(tmp_path, data).returncode == 0


def test_a_symlinked_run_file_is_refused_and_its_target_untouched(trained, tmp_path):
    data = copy_run(trained, tmp_path)
    outside = tmp_path / "elsewhere.jsonl"
    outside.write_text("precious\n")
    os.remove(tmp_path / "run" / "log.jsonl")
    os.symlink(outside, tmp_path / "run" / "log.jsonl")
    line = one_line(train(tmp_path, data, "--epochs", "2"))
    assert "symbolic link" in line
    assert outside.read_text() == "precious\n"


def test_fine_tuning_keeps_or_replaces_the_models_dropout(trained, tmp_path):
    """--init keeps the model's dropout rate unless --dropout is given."""
    import minicnn
    first, data = trained
    rates = {}
    for name, extra in (("kept", []), ("given", ["--dropout", "0.2"])):
        folder = tmp_path / name
        folder.mkdir()
        r = train(folder, data, "--init", str(first / "m.h5"), *extra)
        assert r.returncode == 0, r.stderr
        net = minicnn.load(folder / "m.h5")
        rates[name] = [layer.p for _, layer in net if layer.kind == "dropout"]
    assert rates == {"kept": [0.5], "given": [0.2]}
