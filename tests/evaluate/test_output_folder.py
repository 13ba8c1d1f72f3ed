"""An evaluation's --out folder (and a training run's --run-dir) belongs to one run at a
time, and its files are touched only when they are regular files the run wrote: symbolic
links, FIFOs, foreign or hand-edited files, a deleted run.json and a second run at once
each get one line and exit 1, with nothing outside the folder touched."""
import json
import os
import subprocess
import sys
import textwrap

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import TOOL, make_box_folder, voc_xml

from minicnn.outfolder import FolderLock, read_bounded, regular_or_absent

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def evaluate(*args, timeout=120, command="localize"):
    # a memory limit, so a read of /dev/zero is a failure here, not a machine out of memory
    limit = "import resource; resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30)); "
    code = (limit + f"import runpy, sys; sys.argv = {[TOOL, command, '--no-progress', *args]!r}; "
            f"runpy.run_path({TOOL!r}, run_name='__main__')")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout)


def one_line(r):
    lines = [l for l in r.stderr.strip().splitlines() if l.strip()]
    assert r.returncode == 1 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    return lines[0]


@pytest.fixture(scope="module")
def boxes(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("boxes")
    root, synsets, _ = make_box_folder(tmp, count=2)
    return ["--data", str(root), "--synsets", str(synsets), "--methods", "gradient"]


@pytest.fixture(scope="module")
def finished(boxes, tmp_path_factory):
    """A finished --out folder (2 records) to copy and damage."""
    out = tmp_path_factory.mktemp("finished") / "o"
    r = evaluate(*boxes, "--out", str(out))
    assert r.returncode == 0, r.stderr
    return out


def copy_of(finished, tmp_path):
    import shutil
    shutil.copytree(finished, tmp_path / "o")
    return tmp_path / "o"


def test_a_symlinked_record_file_is_refused_and_its_target_untouched(boxes, tmp_path):
    outside = tmp_path / "precious.jsonl"
    outside.write_bytes(b'{"image": "a"}\n{"image": "b", "torn')    # a "torn" last line
    before = outside.read_bytes()
    out = tmp_path / "o"
    out.mkdir()
    os.symlink(outside, out / "records.jsonl")
    r = evaluate(*boxes, "--out", str(out), "--resume")
    assert "symbolic link" in one_line(r)
    assert outside.read_bytes() == before
    assert not (out / "run.json").exists()          # nothing written before the refusal


def test_a_record_file_linked_to_dev_zero_is_refused_unread(boxes, finished, tmp_path):
    out = copy_of(finished, tmp_path)
    os.remove(out / "records.jsonl")
    os.symlink("/dev/zero", out / "records.jsonl")
    assert "symbolic link" in one_line(evaluate(*boxes, "--out", str(out), "--resume"))


def test_a_fifo_as_run_file_is_refused_not_waited_on(boxes, finished, tmp_path):
    out = copy_of(finished, tmp_path)
    os.remove(out / "run.json")
    os.mkfifo(out / "run.json")
    assert "FIFO" in one_line(evaluate(*boxes, "--out", str(out), "--resume", timeout=60))


def test_records_without_their_run_file_are_not_adopted(boxes, finished, tmp_path):
    out = copy_of(finished, tmp_path)
    os.remove(out / "run.json")
    with open(out / "records.jsonl", "ab") as f:
        f.write(b'{"image": "x", "torn')
    before = (out / "records.jsonl").read_bytes()
    assert "no run.json" in one_line(evaluate(*boxes, "--out", str(out), "--resume"))
    assert (out / "records.jsonl").read_bytes() == before     # the torn line not cut
    assert not (out / "run.json").exists()


@pytest.mark.parametrize("content, words", [("[1, 2]", "JSON list"), ("7", "JSON int"),
                                            ("{", "not valid JSON")])
def test_a_hand_edited_run_file_gives_one_line(boxes, finished, tmp_path, content, words):
    out = copy_of(finished, tmp_path)
    (out / "run.json").write_text(content)
    assert words in one_line(evaluate(*boxes, "--out", str(out), "--resume"))


@pytest.mark.parametrize("record", ['{"image": "ILSVRC2012_val_00000000"}',
                                    '{"image": "x", "label": "a", "top5": 3}',
                                    '{"image": "x", "label": 0, "top5": [0], "boxes": [], '
                                    '"true_boxes": [[0, 0, 1, 1]], "points": {}, "size": [1, 1]}'])
def test_a_hand_edited_record_is_refused_before_any_work(boxes, finished, tmp_path, record):
    out = copy_of(finished, tmp_path)
    lines = (out / "records.jsonl").read_text().splitlines()
    # and a torn last line: refused before anything is cut
    (out / "records.jsonl").write_text("\n".join([record] + lines[1:]) + '\n{"image": "t')
    before = (out / "records.jsonl").read_bytes()
    line = one_line(evaluate(*boxes, "--out", str(out), "--resume"))
    assert "did not write" in line
    assert (out / "records.jsonl").read_bytes() == before


def test_sanity_refuses_the_records_of_localize(boxes, finished, tmp_path):
    out = copy_of(finished, tmp_path)
    # the same settings keys are not enough to pass: the run file names the sub-command
    r = evaluate(*boxes, "--out", str(out), "--resume", command="sanity")
    assert "other settings" in one_line(r) and "command: 'localize' -> 'sanity'" in r.stderr


def hold_lock(folder, note):
    """A child process holding the folder's lock until its stdin closes."""
    code = textwrap.dedent(f"""
        import sys
        from minicnn.outfolder import FolderLock
        lock = FolderLock({str(folder)!r}, "x", {note!r})
        print("locked", flush=True)
        sys.stdin.read()
        """)
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "locked"
    return child


def test_a_second_run_into_one_folder_is_refused_naming_the_first(boxes, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    child = hold_lock(out, "python3 tools/evaluate.py localize --out o")
    try:
        line = one_line(evaluate(*boxes, "--out", str(out)))
        assert "in use by another run" in line and f"pid {child.pid}" in line
        assert "localize --out o" in line
        assert sorted(os.listdir(out)) == [".minicnn.lock"]      # nothing written
    finally:
        child.stdin.close()
        child.wait(30)
    assert evaluate(*boxes, "--out", str(out)).returncode == 0   # free once it ended


def test_two_real_runs_at_once_leave_one_clean_record_file(boxes, tmp_path):
    out = tmp_path / "o"
    runs = [subprocess.Popen([sys.executable, TOOL, "localize", "--no-progress", *boxes,
                              "--out", str(out)], stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    results = [(p.wait(120), p.stderr.read()) for p in runs]
    codes = sorted(code for code, _ in results)
    assert codes[0] == 0, results
    # the other was refused (lock or "already holds") or, if it started after the first
    # ended, refused for the finished folder; never both writing
    assert codes[1] == 1 and any(("in use by another run" in e or "already holds" in e)
                                 for _, e in results), results
    images = [json.loads(l)["image"] for l in (out / "records.jsonl").read_text().splitlines()]
    assert len(images) == len(set(images)) == 2


def test_the_lock_note_of_another_run_is_shown_escaped(tmp_path):
    child = hold_lock(tmp_path, "evil\x1b[2Jname\nsecond")
    try:
        with pytest.raises(ValueError) as err:
            FolderLock(tmp_path, "--out x")
        assert "\x1b" not in str(err.value) and "\n" not in str(err.value)
        assert "evil\\x1b[2Jname second" in str(err.value)
    finally:
        child.stdin.close()
        child.wait(30)


def test_bounded_reads_refuse_big_files_and_links(tmp_path):
    big = tmp_path / "big"
    big.write_bytes(b"x" * 101)
    with pytest.raises(ValueError, match="101 bytes, more than the 100"):
        read_bounded(big, 100)
    assert read_bounded(big, 101) == b"x" * 101
    os.symlink(big, tmp_path / "link")
    with pytest.raises(ValueError, match="symbolic link"):
        regular_or_absent(tmp_path / "link")
    with pytest.raises(ValueError, match="symbolic link"):
        read_bounded(tmp_path / "link", 1000)
    assert regular_or_absent(tmp_path / "absent") is False


# ----------------------------------------------------------------------------- generated states

FILES = ["run.json", "records.jsonl", "skipped.jsonl"]
STATES = st.sampled_from(["keep", "absent", "torn", "duplicated", "foreign", "symlink",
                          "fifo", "folder", "empty", "garbage"])


def damage(out, name, how, outside):
    path = out / name
    if how == "keep":
        return
    if path.exists() or path.is_symlink():
        os.remove(path)
    if how == "absent":
        return
    good = (outside / ("good_" + name)).read_bytes()
    if how == "torn":
        path.write_bytes(good + b'{"image": "ILSVRC2012_val_0000')
    elif how == "duplicated":
        path.write_bytes(good + good)
    elif how == "foreign":
        path.write_bytes(b'{"image": "somebody else", "value": 1}\n' if name != "run.json"
                         else b'{"tool": "another"}\n')
    elif how == "symlink":      # to a file outside: its first line and a torn one
        target = outside / ("linked_" + name)
        target.write_bytes(good.split(b"\n")[0] + b"\n" + b'{"image": "torn')
        os.symlink(target, path)
    elif how == "fifo":
        os.mkfifo(path)
    elif how == "folder":
        path.mkdir()
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "garbage":
        path.write_bytes(b"\x00\xff{[\n\x1b[31m\n")


def snapshot(folder):
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for n in filenames:
            p = os.path.join(dirpath, n)
            out[p] = None if os.path.islink(p) else open(p, "rb").read()
    return out


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(states=st.tuples(STATES, STATES, STATES))
def test_generated_folder_states_end_in_a_run_or_one_line(boxes, finished, tmp_path_factory,
                                                           states):
    import shutil
    tmp = tmp_path_factory.mktemp("state")
    outside = tmp / "outside"
    outside.mkdir()
    for name in FILES:
        src = finished / name
        (outside / ("good_" + name)).write_bytes(src.read_bytes() if src.exists() else b"")
    out = tmp / "o"
    shutil.copytree(finished, out)
    for name, how in zip(FILES, states):
        damage(out, name, how, outside)
    before = snapshot(outside)
    r = evaluate(*boxes, "--out", str(out), "--resume", timeout=60)
    assert "Traceback" not in r.stderr, (states, r.stderr)
    if r.returncode == 0:
        images = [json.loads(l)["image"]
                  for l in (out / "records.jsonl").read_text().splitlines()]
        assert sorted(images) == sorted(set(images)) and len(images) == 2, states
    else:
        one_line(r)
    assert snapshot(outside) == before, states


# ----------------------------------------------------------------------------- data folders

@pytest.mark.parametrize("kind", ["fifo", "dev zero", "big"])
def test_an_annotation_that_is_not_a_bounded_regular_file_is_refused_unread(tmp_path, kind):
    path = tmp_path / "a.xml"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev zero":
        os.symlink("/dev/zero", path)
    else:
        path.write_bytes(b"<annotation>" + b" " * (2 << 20) + b"</annotation>")
    code = ("import sys\nfrom minicnn.evaluate.data import ItemError, parse_annotation\n"
            f"try:\n    parse_annotation({str(path)!r})\nexcept ItemError as e:\n"
            "    print(e)\n    sys.exit(3)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 3, r.stderr
    assert {"fifo": "a FIFO", "dev zero": "a device", "big": "more than the"}[kind] in r.stdout


def test_an_annotation_reached_by_a_link_to_a_regular_file_is_read(tmp_path):
    from minicnn.evaluate.data import parse_annotation
    real = tmp_path / "real.xml"
    real.write_text(voc_xml((10, 8), [("n00000001", [1, 2, 5, 6])]))
    os.symlink(real, tmp_path / "link.xml")
    assert parse_annotation(tmp_path / "link.xml") == parse_annotation(real)


def test_a_hard_linked_record_file_is_refused_and_its_other_name_untouched(boxes, finished,
                                                                            tmp_path):
    out = copy_of(finished, tmp_path)
    outside = tmp_path / "elsewhere.jsonl"
    lines = (out / "records.jsonl").read_text().splitlines()
    outside.write_text(lines[0] + '\n{"image": "torn')     # one record and a torn line
    os.remove(out / "records.jsonl")
    os.link(outside, out / "records.jsonl")
    before = outside.read_bytes()
    assert "hard links" in one_line(evaluate(*boxes, "--out", str(out), "--resume"))
    assert outside.read_bytes() == before
