"""The four tools end to end (subprocess) on a tiny model, and their error handling:
one line on stderr, non-zero exit, no output file."""
import importlib
import json

import numpy as np
import pytest
from PIL import Image

from minicnn import assets

from conftest import run_tool

SHIPPED = assets.DEFAULT_MODEL.is_file() and assets.SAMPLES_INDEX.is_file()


def load_tool(name):
    """The module behind tools/NAME.py (minicnn.commands.NAME)."""
    return importlib.import_module(f"minicnn.commands.{name}")


def png_size(path):
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def test_saliency_cli(model_file, image_files, tmp_path):
    out, npy = tmp_path / "s.png", tmp_path / "s.npy"
    r = run_tool("saliency", "--weights", model_file, "--image", image_files["small"],
                 "--method", "guided", "--smoothgrad", "3", "--class", "stripe",
                 "--out", out, "--npy", npy)
    assert r.returncode == 0, r.stderr
    assert str(out) in r.stdout and png_size(out)[0] > 16 * 3
    sig = np.load(npy)
    assert sig.shape == (3, 16, 16) and sig.dtype == np.float32
    # two images, the larger one through ten crops (auto): one row each
    r = run_tool("saliency", "--weights", model_file, "--image", image_files["small"],
                 image_files["big"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "saliency.png").is_file()


def test_saliency_cli_npz_holds_images_of_any_size(model_file, image_files, tmp_path):
    """--npy PATH.npz: one (C, H, W) array per image, named by its file, whatever the
    sizes; PATH.npy with mixed sizes is refused with one line and nothing written."""
    from minicnn.viz.saliency import crop_saliency
    from minicnn.viz.inputs import load_view
    import minicnn
    npz = tmp_path / "s.npz"
    r = run_tool("saliency", "--weights", model_file, "--image", image_files["small"],
                 image_files["big"], "--npy", npz, cwd=tmp_path)      # auto: 1 and 5 crops
    assert r.returncode == 0, r.stderr
    with np.load(npz) as arrays:
        small, big = (arrays[p.name] for p in map(__import__("pathlib").Path,
                                                     (image_files["small"], image_files["big"])))
    assert small.shape[0] == big.shape[0] == 3 and small.shape != big.shape
    net = minicnn.load(str(model_file))
    frame = load_view(net, image_files["big"], tencrop=True).x
    np.testing.assert_allclose(big, crop_saliency(net, frame, crops=5).signal[0], rtol=1e-5,
                               atol=1e-7)
    bad = tmp_path / "s.npy"
    r = run_tool("saliency", "--weights", model_file, "--image", image_files["small"],
                 image_files["big"], "--npy", bad, "--out", tmp_path / "refused.png")
    assert r.returncode == 1 and "PATH.npz" in r.stderr and len(r.stderr.splitlines()) == 1
    assert not bad.exists() and not (tmp_path / "refused.png").exists()
    # the older spelling still works: --tencrop on is --crops 10
    r = run_tool("saliency", "--weights", model_file, "--image", image_files["big"],
                 "--tencrop", "on", "--npy", tmp_path / "t.npy", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    np.testing.assert_allclose(np.load(tmp_path / "t.npy"),
                               crop_saliency(net, frame, crops=10).signal[0], rtol=1e-5, atol=1e-7)


def test_deconv_cli(model_file, image_files, tmp_path):
    r = run_tool("deconv", "--weights", model_file, "--image", image_files["small"],
                 image_files["small"], "--layer", "conv2_1", "--channel", "top", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    png_size(tmp_path / "deconv.png")


def test_deconv_api_defaults_are_the_tools(model_file, image_files, tmp_path):
    """unit_reconstruction(net, x) with nothing else given reconstructs the unit that
    tools/deconv.py picks at its defaults (the same layer, channel, position and value)."""
    import re
    import minicnn
    from minicnn.viz import load_view, unit_reconstruction
    from minicnn.viz.deconv import default_layer
    r = run_tool("deconv", "--weights", model_file, "--image", image_files["small"],
                 cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    layer, channel, i, j, value = re.search(
        r": (\S+) channel (\d+) at \((\d+), (\d+)\): activation (\S+)", r.stdout).groups()
    net = minicnn.load(model_file)
    rec = unit_reconstruction(net, load_view(net, image_files["small"]).x[None])
    assert layer == default_layer(net)
    assert (int(channel), (int(i), int(j))) == (rec.channels[0], rec.positions[0])
    assert float(value) == pytest.approx(rec.values[0], rel=1e-3)


def test_localize_cli(model_file, image_files, tmp_path):
    out, js = tmp_path / "l.png", tmp_path / "l.json"
    r = run_tool("localize", "--weights", model_file, "--image", image_files["big"],
                 "--out", out, "--json", js)
    assert r.returncode == 0, r.stderr
    png_size(out)
    rec = json.loads(js.read_text())
    assert set(rec) >= {"box", "class", "name", "score"}
    x0, y0, x1, y1 = rec["box"]            # in the 40x40 file's pixels
    assert 0 <= x0 < x1 <= 40 and 0 <= y0 < y1 <= 40


def test_class_model_api_defaults_are_the_tools(model_file, tmp_path):
    """minicnn.viz.class_model(net, [c]) with nothing else given draws the tool's picture:
    the same inputs as tools/class_model.py at its defaults, and a class's picture does
    not depend on the other classes asked for or on the batch size."""
    import minicnn
    from minicnn.viz import class_model
    npy = tmp_path / "c.npy"
    r = run_tool("class_model", "--weights", model_file, "--class", "stripe", "--npy", npy,
                 "--out", tmp_path / "c.png")
    assert r.returncode == 0, r.stderr
    net = minicnn.load(model_file)
    np.testing.assert_array_equal(class_model(net, [1]).x, np.load(npy))
    together = class_model(net, [0, 1, 2], steps=20).x
    one_by_one = class_model(net, [0, 1, 2], steps=20, batch_size=1).x
    np.testing.assert_allclose(together, one_by_one, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(together[1], class_model(net, [1], steps=20).x[0], rtol=1e-4,
                               atol=1e-5)


def test_class_model_cli(model_file, tmp_path):
    out, npy = tmp_path / "c.png", tmp_path / "c.npy"
    args = ("--weights", model_file, "--class", "square", "2", "--steps", "5", "--out", out,
            "--npy", npy)
    r = run_tool("class_model", *args)
    assert r.returncode == 0, r.stderr
    png_size(out)
    x = np.load(npy)
    assert x.shape == (2, 3, 16, 16)
    r = run_tool("class_model", *args)        # same seed, same image
    np.testing.assert_array_equal(np.load(npy), x)
    r = run_tool("class_model", "--weights", model_file, "--class", "square", "0", "2",
                 "--steps", "5", "--npy", npy, "--out", out)
    assert r.returncode == 0 and np.load(npy).shape == (2, 3, 16, 16)   # "0" is square


def _bad_files(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    good = tmp_path / "ok.png"
    noise = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(noise).save(good)
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(good.read_bytes()[:len(good.read_bytes()) // 2])
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    return {"text": text, "truncated": truncated, "empty": empty}


CASES = [
    ("saliency", ["--image", "{text}"], "not an image"),
    ("saliency", ["--image", "{truncated}"], "truncated"),
    ("saliency", ["--image", "{empty}"], "empty.png"),
    ("saliency", ["--image", "{missing}"], "no such"),
    ("saliency", ["--class", "sqare"], "close matches: square"),
    ("saliency", ["--class", "7"], "out of range"),
    ("saliency", ["--noise", "2"], "--noise"),
    ("localize", ["--fg-quantile", "0.2", "--bg-quantile", "0.3"], "quantile"),
    ("localize", ["--image", "{text}"], "not an image"),
    ("deconv", ["--layer", "relu9_9"], "unknown layer"),
    ("deconv", ["--channel", "x"], "--channel"),
    ("deconv", ["--channel", "50", "--layer", "relu1_1"], "out of range"),
    ("class_model", ["--class", "dott"], "close matches: dot"),
    ("class_model", ["--steps", "-1"], "--steps"),
]


@pytest.mark.parametrize("tool,args,message", CASES)
def test_bad_input_one_line_nonzero_no_output(tool, args, message, model_file, image_files,
                                              tmp_path, capsys):
    files = {k: str(v) for k, v in _bad_files(tmp_path).items()}
    files["missing"] = str(tmp_path / "missing.png")
    args = [a.format(**files) for a in args]
    if "--image" not in args and tool != "class_model":
        args += ["--image", image_files["small"]]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "result.png"
    main = load_tool(tool)
    try:
        code = main.cli.run(main.main, main.PROG, ["--weights", model_file, "--out", str(out),
                                                    *args])
    except SystemExit as exc:          # argparse errors
        code = exc.code
    err = capsys.readouterr().err
    assert code != 0
    assert err.count("\n") == 1 and "error:" in err and message in err, err
    assert list(out_dir.iterdir()) == []


def test_bad_input_via_subprocess(model_file, tmp_path):
    r = run_tool("deconv", "--weights", model_file, "--image", tmp_path / "nope.jpg",
                 cwd=tmp_path)
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and "no such" in r.stderr
    assert not (tmp_path / "deconv.png").exists()
    r = run_tool("saliency", "--weights", tmp_path / "nope.h5", cwd=tmp_path)
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and "nope.h5" in r.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not SHIPPED, reason="shipped model weights/fashion_vgg.h5 not present")
@pytest.mark.parametrize("tool,extra", [("saliency", []), ("deconv", []), ("localize", []),
                                        ("class_model", ["--steps", "3"])])
def test_shipped_model_defaults(tool, extra, tmp_path):
    r = run_tool(tool, *extra, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    png_size(tmp_path / f"{tool}.png")


def test_missing_dependency_is_one_line(model_file, image_files, tmp_path, monkeypatch, capsys):
    import builtins
    real_import = builtins.__import__

    def no_maxflow(name, *args, **kwargs):
        if name == "maxflow":
            raise ModuleNotFoundError("No module named 'maxflow'", name="maxflow")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_maxflow)
    main = load_tool("localize")
    out = tmp_path / "l.png"
    code = main.cli.run(main.main, main.PROG, ["--weights", model_file, "--image",
                                               image_files["small"], "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "pip install PyMaxflow" in err, err
    assert not out.exists()
