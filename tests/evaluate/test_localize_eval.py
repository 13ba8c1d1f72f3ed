"""tools/evaluate.py localize end to end on small data the tests make, and the pieces it
is built from."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import minicnn
from minicnn import assets
from minicnn.evaluate import BoxFolder, LocalizeSettings, evaluate_item
from minicnn.evaluate.localization import class_maps, mask_to_file, point_to_file
from minicnn.evaluate.runner import Job, RecordStore, run
from minicnn.viz.inputs import View
from minicnn.viz.saliency import class_signal, saliency

from children import default_dispositions
from conftest import TOOL, add_bad_items, make_box_folder, read_records, write_idx


@pytest.fixture(scope="module")
def net():
    return minicnn.load(assets.default_model())


@pytest.fixture(scope="module")
def sample_x(net):
    return net.preprocess(minicnn.load_image(assets.samples()[0]["file"]))


def evaluate(*args, timeout=300):
    return subprocess.run([sys.executable, TOOL, "localize", "--no-progress", *args],
                          capture_output=True, text=True, timeout=timeout)


# ----------------------------------------------------------------------------- pieces

@pytest.mark.parametrize("rule", ["gradient", "deconvnet", "guided"])
def test_class_maps_equal_one_batch_per_class(net, sample_x, rule):
    """One forward and a backward per class == the viz saliency of a batch holding the
    image once per class."""
    classes = [3, 0, 7]
    got = class_maps(net, sample_x, classes, rule)
    want = saliency(net, np.repeat(sample_x[None], 3, axis=0), classes, rule).map
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7 * float(np.abs(want).max()))


def test_class_maps_smoothgrad_is_the_mean_over_seeded_noisy_copies(net, sample_x):
    got = class_maps(net, sample_x, [2, 5], "gradient", samples=6, noise=0.2, seed=(0, 4),
                     batch_size=4)
    rng = np.random.default_rng((0, 4))
    sigma = np.float32(0.2 * float(sample_x.max() - sample_x.min()))
    noisy = sample_x[None] + rng.standard_normal((6,) + sample_x.shape).astype(np.float32) * sigma
    for k, c in enumerate([2, 5]):
        signal_ = class_signal(net, noisy, np.full(6, c))[0].astype(np.float64).mean(axis=0)
        np.testing.assert_allclose(got[k], np.abs(signal_).max(axis=0), rtol=1e-5,
                                   atol=1e-6 * float(got[k].max()))


def test_view_points_and_masks_map_to_file_pixels():
    view = View(x=None, rgb=None, scale=(2.0, 2.0), offset=(4.0, 0.0), size=(20, 10), path="")
    assert point_to_file(view, (0, 0)) == [5, 1]          # centre (0.5, 0.5) -> (5, 1)
    assert point_to_file(view, (7, 4)) == [19, 9]         # clipped to the image
    mask = np.zeros((5, 8), bool)
    mask[1, 2] = True
    full = mask_to_file(view, mask)
    assert full.shape == (10, 20)
    assert sorted(zip(*np.nonzero(full))) == [(2, 8), (2, 9), (3, 8), (3, 9)]
    same = View(x=None, rgb=None, scale=(1.0, 1.0), offset=(0.0, 0.0), size=(8, 5), path="")
    assert mask_to_file(same, mask) is mask


@pytest.mark.parametrize("rule", ["gradient", "deconvnet", "guided"])
def test_maps_from_the_scores_forward_equal_a_fresh_pass(net, sample_x, rule):
    """The plain methods reuse the forward pass that gave the scores: their maps equal
    class_maps' own forward + backward bit for bit."""
    from minicnn.evaluate.localization import backward_maps
    classes = [3, 0, 7]
    want = class_maps(net, sample_x, classes, rule)
    net.forward(sample_x[None])
    np.testing.assert_array_equal(backward_maps(net, classes, rule), want)


def test_label_mode_records_equal_top5_mode_records(net, tmp_path):
    root, synsets, _ = make_box_folder(tmp_path, count=2)
    src = BoxFolder(root, synsets)
    for i in range(len(src)):
        item = src.item(i)
        full = evaluate_item(net, item, i, LocalizeSettings(methods=["gradient", "guided"]))
        lean = evaluate_item(net, item, i, LocalizeSettings(methods=["gradient", "guided"],
                                                            boxes="label"))
        label = str(item.label)
        for m in ("gradient", "guided"):
            assert len(full["boxes"][m]) == 5
            assert lean["boxes"][m] == ({label: full["boxes"][m][label]}
                                        if label in full["boxes"][m] else {})
        assert lean["points"] == full["points"]
        assert lean["top5"] == full["top5"]


# ----------------------------------------------------------------------------- command

def test_skipped_lines_show_control_characters_of_file_names_escaped(tmp_path):
    """An image file named with an escape sequence and a newline is skipped in one line
    that shows them as text (they reached the terminal raw)."""
    root, synsets, _ = make_box_folder(tmp_path, count=1)
    (root / "evil\x1b[2J\nname.png").write_bytes(b"not a png")
    r = evaluate("--data", str(root), "--synsets", str(synsets), "--methods", "gradient",
                 "--out", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    skipped = [line for line in r.stderr.splitlines() if line.startswith("skipped")]
    assert len(skipped) == 1 and "\x1b" not in r.stderr
    assert "evil\\x1b[2J\\nname.png" in skipped[0], skipped


def test_a_fifo_as_synsets_is_refused_not_waited_on(tmp_path):
    import os
    root, _, _ = make_box_folder(tmp_path, count=1)
    fifo = tmp_path / "synsets.fifo"
    os.mkfifo(fifo)
    r = evaluate("--data", str(root), "--synsets", str(fifo), "--methods", "gradient",
                 "--out", str(tmp_path / "out"), timeout=60)
    assert r.returncode == 1 and "not a regular file" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_a_run_with_no_usable_image_fails_with_one_line(tmp_path):
    root, synsets, _ = make_box_folder(tmp_path, count=2)
    for xml in tmp_path.rglob("*.xml"):
        xml.unlink()
    out = tmp_path / "out"
    r = evaluate("--data", str(root), "--synsets", str(synsets), "--methods", "gradient",
                 "--out", str(out))
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert "no image could be evaluated (2 without an annotation" in last, r.stderr
    assert not (out / "summary.json").exists()


def test_best_worst_figure_shows_each_image_once_and_labels_only_what_qualifies():
    from minicnn.evaluate import report
    records = [{"image": f"i{k}", "label": 0, "top5": [0], "true_boxes": [[0, 0, 10, 10]],
                "boxes": {"gradient": {"0": [0, 0, 10 - k, 10]}}} for k in range(3)]
    shown = []

    def load_item(key):
        shown.append(key)
        return type("Item", (), {"image": np.zeros((16, 16, 3), np.uint8)})

    labels = []
    real_panel = report.render.panel

    def panel(img, label, **kw):
        labels.append(label.split(":")[1].split("\n")[0].strip())
        return real_panel(img, label, **kw)

    report.render.panel, saved = panel, report.render.panel
    try:
        report.best_worst_figure(records, ["gradient"], load_item, ["zero"], count=4)
    finally:
        report.render.panel = saved
    assert labels == ["best", "best", "worst"]        # 3 images: 2 best, 1 worst, none twice
    assert sorted(shown) == ["i0", "i1", "i2"]



def test_localize_on_an_ilsvrc_folder(tmp_path):
    root, synsets, expected = make_box_folder(tmp_path, count=5)
    bad = add_bad_items(root)
    out = tmp_path / "out"
    r = evaluate("--data", str(root), "--synsets", str(synsets), "--methods",
                 "gradient,smoothgrad", "--smoothgrad", "3", "--out", str(out))
    assert r.returncode == 0, r.stderr
    skipped_lines = [line for line in r.stderr.splitlines() if line.startswith("skipped")]
    assert len(skipped_lines) == 3 and all(any(b in line for b in bad) for line in skipped_lines)
    records = read_records(out)
    assert [rec["image"] for rec in records] == sorted(expected)       # data order
    for rec in records:
        label, truth = expected[rec["image"]]
        assert rec["label"] == label and rec["true_boxes"] == truth
        w, h = rec["size"]
        assert len(rec["top5"]) == 5 and len(set(rec["top5"])) == 5
        for m in ("gradient", "smoothgrad"):
            assert sorted(rec["boxes"][m]) == sorted(str(c) for c in rec["top5"])
            for box in rec["boxes"][m].values():
                assert box is None or (0 <= box[0] < box[2] <= w and 0 <= box[1] < box[3] <= h)
            x, y = rec["points"][m]
            assert 0 <= x < w and 0 <= y < h
    assert next(rec for rec in records if rec["image"].startswith("extra/"))["size"] in ([96, 80], [64, 64])
    skipped = [json.loads(line) for line in open(out / "skipped.jsonl")]
    assert sorted(s["image"] for s in skipped) == bad
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == len(expected)
    assert summary["skipped"] == {"no annotation": 1, "unusable": 2}      # bad_noxml apart
    assert set(summary["localisation_error"]) == {"gradient", "smoothgrad", "centre_box",
                                                  "full_image"}
    assert set(summary["pointing_game"]) == {"gradient", "smoothgrad", "centre_point"}
    for v in summary["localisation_error"].values():
        assert 0 <= v["top1"] <= 1 and v["top5"] <= v["top1"]
    md = (out / "summary.md").read_text()
    assert "| gradient (Simonyan et al.) |" in md and "tools/evaluate.py localize" in md
    assert "1 without an annotation, 2 with an unusable image or annotation" in md
    from PIL import Image
    assert Image.open(out / "localize_best_worst.png").size[0] > 200


def test_localize_on_cluttered_canvases_measures_masks(tmp_path, fashion_dir):
    out = tmp_path / "out"
    r = evaluate("--data", "cluttered-test", "--fashion-dir", str(fashion_dir),
                 "--methods", "gradient,deconvnet", "--boxes", "label", "--out", str(out))
    assert r.returncode == 0, r.stderr
    records = read_records(out)
    assert [rec["image"] for rec in records] == [f"canvas_{i:05d}.png" for i in range(6)]
    for rec in records:
        assert set(rec["mask_iou"]) == {"gradient", "deconvnet"}
        assert all(0 <= v <= 1 for v in rec["mask_iou"].values())
        assert rec["mask_area"] > 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["mask_iou"]) == {"gradient", "deconvnet", "full_image"}
    assert summary["mask_iou"]["full_image"] == pytest.approx(
        np.mean([rec["mask_area"] / 64 ** 2 for rec in records]))


def test_records_are_the_same_after_a_torn_write_and_resume(tmp_path):
    root, synsets, _ = make_box_folder(tmp_path, count=5)
    src = BoxFolder(root, synsets)
    from functools import partial
    settings = LocalizeSettings(methods=["gradient"], boxes="label")
    job = Job(assets.default_model(), partial(evaluate_item, settings=settings))
    whole = run(job, src, RecordStore(tmp_path / "whole", {"a": 1}), chunk_size=2,
                progress=False)
    part_dir = tmp_path / "part"
    run(job, src, RecordStore(part_dir, {"a": 1}), limit=3, chunk_size=2, progress=False)
    with open(part_dir / "records.jsonl", "a") as f:
        f.write('{"image": "ILSVRC2012_val_000000')            # a write cut short
    with pytest.raises(ValueError, match="already holds an evaluation"):
        RecordStore(part_dir, {"a": 1})
    with pytest.raises(ValueError, match="other settings"):
        RecordStore(part_dir, {"a": 2}, resume=True)
    resumed = run(job, src, RecordStore(part_dir, {"a": 1}, resume=True), chunk_size=3,
                  progress=False)
    assert resumed.records == whole.records
    assert (part_dir / "records.jsonl").read_bytes() == (tmp_path / "whole" / "records.jsonl").read_bytes()


def test_ctrl_c_keeps_finished_records_and_resume_completes_them(tmp_path):
    root, synsets, _ = make_box_folder(tmp_path, count=6)
    args = ["--data", str(root), "--synsets", str(synsets), "--methods", "gradient",
            "--boxes", "label", "--chunk-size", "1"]
    ref = evaluate(*args, "--out", str(tmp_path / "ref"))
    assert ref.returncode == 0, ref.stderr
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, TOOL, "localize", "--no-progress", *args,
                             "--out", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_dispositions)
    records = out / "records.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not records.exists() or records.read_text().count("\n") < 2):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "--resume" in err
    kept = records.read_text().count("\n")
    assert 2 <= kept < 6
    again = evaluate(*args, "--out", str(out), "--resume")
    assert again.returncode == 0, again.stderr
    assert records.read_bytes() == (tmp_path / "ref" / "records.jsonl").read_bytes()


def test_dask_cluster_of_two_workers_gives_identical_records(tmp_path):
    pytest.importorskip("dask.distributed")
    root, synsets, _ = make_box_folder(tmp_path, count=6)
    args = ["--data", str(root), "--synsets", str(synsets), "--methods",
            "gradient,smoothgrad", "--smoothgrad", "3", "--boxes", "label"]
    here = evaluate(*args, "--out", str(tmp_path / "here"))
    assert here.returncode == 0, here.stderr
    dask = evaluate(*args, "--out", str(tmp_path / "dask"), "--workers", "2",
                    "--chunk-size", "2")
    assert dask.returncode == 0, dask.stderr
    assert (tmp_path / "dask" / "records.jsonl").read_bytes() == \
        (tmp_path / "here" / "records.jsonl").read_bytes()
    assert json.loads((tmp_path / "dask" / "summary.json").read_text()) == \
        json.loads((tmp_path / "here" / "summary.json").read_text())


def test_measured_conv_algorithms_are_fixed_for_the_run_and_its_workers(tmp_path):
    """Under the measuring policy the main process measures once and the run keeps the
    table in conv_algorithms.json: the workers of a second run handed that table compute
    the same records byte for byte, and a resume keeps it."""
    pytest.importorskip("dask.distributed")
    root, synsets, _ = make_box_folder(tmp_path, count=4)
    args = ["--data", str(root), "--synsets", str(synsets), "--methods", "gradient,guided",
            "--boxes", "label"]
    env = dict(os.environ, MINICNN_CONV="measure")

    def run_in(out, *extra):
        return subprocess.run([sys.executable, TOOL, "localize", "--no-progress", *args,
                               "--out", str(out), *extra], capture_output=True, text=True,
                              timeout=300, env=env)
    here = run_in(tmp_path / "here", "--limit", "2")
    assert here.returncode == 0, here.stderr
    table = json.loads((tmp_path / "here" / "conv_algorithms.json").read_text())
    assert table["policy"] == "measure" and table["choices"]
    assert set(table["choices"].values()) <= {"im2col", "winograd2", "winograd4"}
    assert run_in(tmp_path / "here", "--resume").returncode == 0       # the other two
    assert json.loads((tmp_path / "here" / "conv_algorithms.json").read_text()) == table
    (tmp_path / "dask").mkdir()
    (tmp_path / "dask" / "conv_algorithms.json").write_text(json.dumps(table))
    dask = run_in(tmp_path / "dask", "--workers", "2", "--chunk-size", "1")
    assert dask.returncode == 0, dask.stderr
    assert (tmp_path / "dask" / "records.jsonl").read_bytes() == \
        (tmp_path / "here" / "records.jsonl").read_bytes()


def test_resume_refuses_a_damaged_conv_table(tmp_path):
    root, synsets, _ = make_box_folder(tmp_path, count=2)
    args = ["--data", str(root), "--synsets", str(synsets), "--methods", "gradient",
            "--out", str(tmp_path / "o")]
    assert evaluate(*args, "--limit", "1").returncode == 0
    (tmp_path / "o" / "conv_algorithms.json").write_text('{"policy": "fastest"}')
    before = (tmp_path / "o" / "records.jsonl").read_bytes()
    r = evaluate(*args, "--resume")
    assert r.returncode == 1 and "conv_algorithms.json: not the conv algorithms" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert (tmp_path / "o" / "records.jsonl").read_bytes() == before


@pytest.mark.parametrize("extra, message", [
    (["--data", "{root}"], "needs --synsets"),
    (["--data", "{root}", "--synsets", "{few}"], "the model has 10 classes but the data names 4"),
    (["--data", "cluttered-test", "--fashion-dir", "{empty}"], "apt-get install dataset-fashion-mnist"),
    (["--data", "{root}", "--synsets", "{synsets}", "--methods", "gradient,saliency"], "expected a comma-separated list"),
    (["--data", "{root}", "--synsets", "{synsets}", "--bg-quantile", "0.99"], "must be below"),
    (["--data", "{root}", "--synsets", "{synsets}", "--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "not allowed with"),
])
def test_usage_errors_are_one_line(tmp_path, extra, message):
    root, synsets, _ = make_box_folder(tmp_path, count=1)
    few = tmp_path / "few.txt"
    few.write_text("a A\nb B\nc C\nd D\n")
    (tmp_path / "empty").mkdir()
    fill = {"root": str(root), "synsets": str(synsets), "few": str(few),
            "empty": str(tmp_path / "empty")}
    r = evaluate(*[a.format(**fill) for a in extra], "--out", str(tmp_path / "o"))
    assert r.returncode in (1, 2)
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "o" / "records.jsonl").exists()


def test_existing_results_are_not_overwritten_without_resume(tmp_path):
    root, synsets, _ = make_box_folder(tmp_path, count=1)
    args = ["--data", str(root), "--synsets", str(synsets), "--methods", "gradient",
            "--out", str(tmp_path / "o")]
    assert evaluate(*args).returncode == 0
    before = (tmp_path / "o" / "records.jsonl").read_bytes()
    r = evaluate(*args)
    assert r.returncode == 1 and "--resume" in r.stderr
    r = evaluate(*args[:-2], "--methods", "guided", "--out", str(tmp_path / "o"), "--resume")
    assert r.returncode == 1 and "other settings (settings.methods: ['gradient'] -> ['guided'])" in r.stderr
    assert (tmp_path / "o" / "records.jsonl").read_bytes() == before


def test_a_flat_map_gives_no_box_instead_of_stopping_the_run(net, tmp_path, monkeypatch):
    """A net whose maps are all zero (every signal blocked) still yields a record: no box,
    an error under the ILSVRC rule, mask IoU 0."""
    from minicnn.evaluate import localization
    root, synsets, _ = make_box_folder(tmp_path, count=1)
    item = BoxFolder(root, synsets).item(0)
    item.mask = np.zeros(item.image.shape[:2], bool)
    item.mask[item.true_boxes[0][1]:item.true_boxes[0][3], item.true_boxes[0][0]:item.true_boxes[0][2]] = True
    monkeypatch.setattr(localization, "class_maps",
                        lambda net, x, classes, *a, **k: np.zeros((len(classes),) + x.shape[1:], np.float32))
    monkeypatch.setattr(localization, "backward_maps",
                        lambda net, classes, rule: np.zeros((len(classes),) + net.input_shape[1:],
                                                            np.float32))
    rec = evaluate_item(net, item, 0, LocalizeSettings(methods=["gradient"]))
    assert all(b is None for b in rec["boxes"]["gradient"].values())
    assert rec["mask_iou"]["gradient"] == 0.0
    assert localization.localize_or_none(item.image, np.ones((64, 64)), LocalizeSettings()) is None


def test_ctrl_c_at_the_terminal_with_workers_gives_one_line(tmp_path):
    """Ctrl-C reaches the whole process group (the tool and its Dask workers): one line,
    exit 130, no worker tracebacks, and --resume completes the records."""
    pytest.importorskip("dask.distributed")
    rng = np.random.default_rng(1)
    folder = tmp_path / "fashion"
    folder.mkdir()
    write_idx(folder / "t10k-images-idx3-ubyte.gz", 0x803,
              rng.integers(0, 256, (300, 28, 28)).astype(np.uint8))
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", 0x801, np.arange(300) % 10)
    out = tmp_path / "o"
    args = ["--data", "cluttered-test", "--fashion-dir", str(folder), "--methods", "gradient",
            "--boxes", "label", "--workers", "2", "--chunk-size", "1", "--out", str(out)]

    def started():
        return subprocess.Popen([sys.executable, TOOL, "localize", "--no-progress", *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=default_dispositions, start_new_session=True)
    proc = started()
    records = out / "records.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not records.exists() or records.read_text().count("\n") < 4):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1 and "--resume" in err, err
    again = evaluate(*args, "--resume", timeout=300)
    assert again.returncode == 0, again.stderr
    images = [json.loads(l)["image"] for l in records.read_text().splitlines()]
    assert len(images) == len(set(images)) == 300


def test_ten_crops_with_a_descendant_of_the_paper_map(net, tmp_path):
    """--tencrop on with Grad-CAM: the blend of the ten crops' Grad-CAM maps."""
    from minicnn.evaluate import localization
    from minicnn.evaluate.localization import descendant_maps
    from minicnn.viz.saliency import tencrop_saliency
    root, synsets, _ = make_box_folder(tmp_path, count=2)
    item = BoxFolder(root, synsets).item(1)          # 96x80: larger than the input
    settings = LocalizeSettings(methods=["gradcam"], tencrop=True)
    view = localization._view(net, item, True)
    maps = descendant_maps(net, view, [3, 5], "gradcam", settings)
    for k, c in enumerate([3, 5]):
        np.testing.assert_array_equal(maps[k], tencrop_saliency(net, view.x, c, "gradcam").map[0])
