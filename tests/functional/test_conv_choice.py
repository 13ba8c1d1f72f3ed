"""The conv algorithm choice (minicnn/functional/conv_choice.py): every algorithm computes
the conv, a choice once made holds for the process, a frozen table is obeyed, and the
wisdom file is used when sound and ignored (then replaced) when not."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minicnn import functional as F
from minicnn.functional import conv_choice, reference

K = conv_choice.WINOGRAD_MIN_CHANNELS


@pytest.fixture(autouse=True)
def fresh_table(monkeypatch):
    """Each test starts with no measurements and no wisdom file read."""
    monkeypatch.setattr(conv_choice, "_table", {})
    monkeypatch.setattr(conv_choice, "_wisdom_loaded", None)
    monkeypatch.setenv("MINICNN_CONV_WISDOM", "off")


def conv_all(x, weight, bias, dy):
    """The three directions through the dispatcher."""
    return (F.conv2d_forward(x, weight, bias, 1, 1),
            F.conv2d_backward_input(dy, weight, x.shape, 1, 1),
            F.conv2d_backward_params(dy, x, weight.shape, 1, 1))


def reference_all(x, weight, bias, dy):
    return (reference.conv2d_forward(x, weight, bias, 1, 1),
            reference.conv2d_backward_input(dy, weight, x.shape, 1, 1),
            reference.conv2d_backward_params(dy, x, weight.shape, 1, 1))


@pytest.mark.parametrize("algorithm", conv_choice.ALGORITHMS)
@given(batch=st.integers(1, 3), c=st.integers(K, K + 9), o=st.integers(K, K + 9),
       h=st.integers(1, 13), w=st.integers(1, 13), seed=st.integers(0, 2**16))
def test_every_forced_algorithm_computes_the_conv(algorithm, batch, c, o, h, w, seed):
    """In float64 each algorithm gives the reference's conv, transposed conv and weight
    gradient (F(4x4) falls back to F(2x2) for the weight gradient, which it lacks)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, c, h, w))
    weight, bias = rng.standard_normal((o, c, 3, 3)), rng.standard_normal(o)
    dy = rng.standard_normal((batch, o, h, w))
    with conv_choice.policy(algorithm):
        got = conv_all(x, weight, bias, dy)
    want = reference_all(x, weight, bias, dy)
    for a, b in zip(got[:2] + got[2], want[:2] + want[2]):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)


def test_forced_algorithm_is_the_one_that_runs(monkeypatch):
    """A forced policy reaches its own code: F(4x4) runs only under winograd4 (and not
    for the weight gradient), im2col never calls a Winograd transform."""
    from minicnn.functional import winograd, winograd4
    calls = []
    for module, name in ((winograd, "winograd_conv3x3"), (winograd4, "winograd4_conv3x3"),
                         (winograd, "winograd_conv3x3_backward_params")):
        real = getattr(module, name)
        monkeypatch.setattr(module, name,
                            lambda *a, _n=name, _r=real, **k: calls.append(_n) or _r(*a, **k))
    rng = np.random.default_rng(0)
    x, dy = rng.standard_normal((1, K, 6, 6)), rng.standard_normal((1, K, 6, 6))
    weight = rng.standard_normal((K, K, 3, 3))
    expected = {"im2col": [],
                "winograd2": ["winograd_conv3x3", "winograd_conv3x3",
                              "winograd_conv3x3_backward_params"],
                "winograd4": ["winograd4_conv3x3", "winograd4_conv3x3",
                              "winograd_conv3x3_backward_params"]}
    for algorithm, names in expected.items():
        calls.clear()
        with conv_choice.policy(algorithm):
            conv_all(x, weight, None, dy)
        assert calls == names, (algorithm, calls)


def test_measure_times_each_candidate_once_then_keeps_its_choice(monkeypatch):
    """The first call of a shape times the candidates; later calls of that shape do not,
    and compute exactly what the chosen algorithm forced computes."""
    monkeypatch.setattr(conv_choice, "MEASURE_MIN_MACS", 0)
    timed = []
    real = conv_choice._fastest
    monkeypatch.setattr(conv_choice, "_fastest", lambda options, run, default:
                        timed.append(options) or real(options, run, default))
    rng = np.random.default_rng(1)
    x, dy = rng.standard_normal((2, K, 8, 8)), rng.standard_normal((2, K, 8, 8))
    weight, bias = rng.standard_normal((K, K, 3, 3)), rng.standard_normal(K)
    with conv_choice.policy("measure"), conv_choice.recording() as table:
        first = conv_all(x, weight, bias, dy)
        assert timed == [conv_choice.ALGORITHMS, conv_choice.ALGORITHMS,
                         ("im2col", "winograd2")]
        again = conv_all(x, weight, bias, dy)
        assert len(timed) == 3
    assert set(table) == {conv_choice.conv_key(d, x.shape, weight.shape, x.dtype)
                          for d in ("forward", "backward_input", "backward_params")}
    for direction, a, b in zip(("forward", "backward_input"), first, again):
        np.testing.assert_array_equal(a, b)
        with conv_choice.policy(table[conv_choice.conv_key(direction, x.shape, weight.shape,
                                                            x.dtype)]):
            forced = conv_all(x, weight, bias, dy)
        np.testing.assert_array_equal(a, forced[0 if direction == "forward" else 1])


def test_small_or_non_vgg_convs_are_not_timed(monkeypatch):
    monkeypatch.setattr(conv_choice, "_fastest", lambda *a: pytest.fail("timed"))
    rng = np.random.default_rng(2)
    with conv_choice.policy("measure"):
        F.conv2d_forward(rng.standard_normal((1, K, 4, 4)), rng.standard_normal((K, K, 3, 3)),
                         None, 1, 1)                                     # too small
        F.conv2d_forward(rng.standard_normal((1, 3, 64, 64)), rng.standard_normal((64, 3, 3, 3)),
                         None, 1, 1)                                     # RGB input: im2col only
    assert conv_choice.choices() == {}


def test_frozen_table_is_obeyed_and_missing_keys_take_the_rule(monkeypatch):
    monkeypatch.setattr(conv_choice, "_fastest", lambda *a: pytest.fail("timed"))
    x = np.zeros((1, K, 8, 8))
    key = conv_choice.conv_key("forward", x.shape, (K, K, 3, 3), x.dtype)
    seen = []
    with conv_choice.frozen({key: "im2col", "junk": "nonsense", 3: "im2col"}):
        assert conv_choice.frozen_table() == {key: "im2col"}
        seen.append(conv_choice.choose("forward", x, (K, K, 3, 3), 1, 1, None))
        seen.append(conv_choice.choose("backward_input", x, (K, K, 3, 3), 1, 1, None))
    assert seen == ["im2col", conv_choice.rule_choice("backward_input", x.shape, (K, K, 3, 3),
                                                      1, 1)]


def test_frozen_table_reaches_the_pool_threads(two_threads):
    """A frozen block holds in minicnn's pool threads too (a training step's shards)."""
    from minicnn.threads import parallel_map
    with conv_choice.frozen({"a": "im2col"}):
        seen = parallel_map(lambda _: conv_choice.frozen_table(), range(4))
    assert seen == [{"a": "im2col"}] * 4


def test_bad_policy_is_one_line(monkeypatch):
    monkeypatch.setenv("MINICNN_CONV", "fastest")
    with pytest.raises(conv_choice.ConvPolicyError, match="MINICNN_CONV must be one of"):
        conv_choice.conv_policy()
    with pytest.raises(conv_choice.ConvPolicyError):
        conv_choice.set_conv_policy("winograd8")


def test_a_tool_refuses_a_bad_policy_in_one_line(tmp_path):
    env = dict(os.environ, MINICNN_CONV="fastest")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    r = subprocess.run([sys.executable, os.path.join(root, "tools", "saliency.py"), "--out",
                        str(tmp_path / "s.png")], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert "MINICNN_CONV must be one of" in r.stderr and not (tmp_path / "s.png").exists()


# ----------------------------------------------------------------------------- wisdom file

CHILD = """
import json, sys
import numpy as np
from minicnn import functional as F
from minicnn.functional import conv_choice
conv_choice.MEASURE_MIN_MACS = 0
timed = []
real = conv_choice._fastest
conv_choice._fastest = lambda options, run, default: timed.append(1) or real(options, run, default)
x = np.zeros((1, 16, 8, 8), np.float32)
F.conv2d_forward(x, np.zeros((16, 16, 3, 3), np.float32), None, 1, 1)
print(json.dumps({"timed": len(timed), "choices": conv_choice.choices()}))
"""


def child(wisdom):
    env = dict(os.environ, MINICNN_CONV="measure", MINICNN_CONV_WISDOM=str(wisdom),
               MINICNN_THREADS="1")
    r = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_wisdom_file_carries_the_choices_to_the_next_process(tmp_path):
    wisdom = tmp_path / "wisdom.json"
    first = child(wisdom)
    assert first["timed"] == 1 and len(first["choices"]) == 1
    saved = json.loads(wisdom.read_text())
    assert saved["choices"] == first["choices"]
    assert saved["machine"] == conv_choice.machine_tag()
    second = child(wisdom)
    assert second == {"timed": 0, "choices": first["choices"]}


@pytest.mark.parametrize("content", [
    b"not json", b"[1, 2]", b'{"machine": "another machine", "choices": {}}',
    b"x" * (conv_choice.MAX_WISDOM_BYTES + 1), b"[" * 200000],
    ids=["garbage", "list", "other-machine", "too-large", "deeply-nested"])
def test_unsound_wisdom_is_ignored_and_replaced(tmp_path, content):
    wisdom = tmp_path / "wisdom.json"
    wisdom.write_bytes(content)
    if content.startswith(b'{"machine"'):      # another machine's choices: a real tag
        wisdom.write_text(json.dumps({"machine": "Other CPU | OpenBLAS | numpy 0",
                                      "choices": {"forward 1x16x8x8 16x16x3x3 float32 @1t":
                                                  "winograd4"}}))
    result = child(wisdom)
    assert result["timed"] == 1
    assert json.loads(wisdom.read_text())["machine"] == conv_choice.machine_tag()


def test_default_wisdom_file_is_per_machine_in_the_cache_folder(tmp_path):
    env = dict(os.environ, MINICNN_CONV="measure", XDG_CACHE_HOME=str(tmp_path),
               MINICNN_THREADS="1")
    env.pop("MINICNN_CONV_WISDOM", None)
    for _ in range(2):
        r = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                           env=env, timeout=300)
        assert r.returncode == 0, r.stderr
    files = list((tmp_path / "minicnn").glob("conv-wisdom-*.json"))
    assert len(files) == 1
    assert json.loads(r.stdout.strip().splitlines()[-1])["timed"] == 0    # the second read it


def test_wisdom_that_is_not_a_regular_file_is_not_read(tmp_path):
    fifo = tmp_path / "wisdom.json"
    os.mkfifo(fifo)                       # opening it to read would block for ever
    result = child(fifo)
    assert result["timed"] == 1


def test_a_near_tie_keeps_the_rules_choice(monkeypatch):
    """Timing noise must not flip a choice from run to run: another algorithm replaces
    the rule's only when it is MARGIN faster."""
    clock = {"im2col": 1.0, "winograd2": 1.0 + conv_choice.MARGIN / 2, "winograd4": 2.0}
    monkeypatch.setattr(conv_choice, "_timed", lambda run, algorithm: clock[algorithm])
    warm_up = lambda algorithm: None                        # noqa: E731
    assert conv_choice._fastest(conv_choice.ALGORITHMS, warm_up, "winograd2") == "winograd2"
    clock["im2col"] = 0.8
    assert conv_choice._fastest(conv_choice.ALGORITHMS, warm_up, "winograd2") == "im2col"


def test_candidates_are_timed_in_turn_and_a_much_slower_one_dropped(monkeypatch):
    """Warm-ups are not timed (a Winograd warm-up computes the kernel transforms, 100 ms
    for a 512x512 conv, which once made F(2x2) look 7x slower than it runs); after one
    timed round, a candidate SKIP_SLOWER times the fastest is not timed again."""
    calls, timed = [], []

    def run(algorithm):
        calls.append(algorithm)

    def fake_timed(run, algorithm):
        timed.append(algorithm)
        return {"im2col": 1.0, "winograd2": 10.0, "winograd4": 0.5}[algorithm]
    monkeypatch.setattr(conv_choice, "_timed", fake_timed)
    assert conv_choice._fastest(conv_choice.ALGORITHMS, run, "im2col") == "winograd4"
    assert calls == list(conv_choice.ALGORITHMS)                  # the untimed warm-ups
    assert timed == list(conv_choice.ALGORITHMS) + ["im2col", "winograd4"] * (
        conv_choice.TIMED_ROUNDS - 1)


def test_measuring_leaves_only_the_chosen_transforms_in_a_layers_memo(monkeypatch):
    """The candidates are timed with memos of their own: a Conv2d's memo afterwards holds
    the kernel transform of the algorithm it runs, not of every one tried."""
    from minicnn.layers import Conv2d
    monkeypatch.setattr(conv_choice, "MEASURE_MIN_MACS", 0)
    monkeypatch.setattr(conv_choice, "_fastest", lambda options, run, default:
                        [run(a) for a in options] and "im2col")
    conv = Conv2d(K, K, 3, 1, 1)
    with conv_choice.policy("measure"):
        conv.forward(np.random.default_rng(0).standard_normal((1, K, 8, 8)).astype(np.float32))
    assert conv._kernels._transforms == {}               # im2col: no transform kept


def test_measuring_while_another_thread_runs_convs_on_the_pool(monkeypatch, two_threads):
    """A conv measured (under the lock, its work on the pool) while another thread's
    parallel_map runs convs on the same pool: both finish (the pool's one helper thread
    is blocked on the lock, so the measuring call must not wait for it)."""
    import threading
    import time
    from minicnn.threads import parallel_map
    monkeypatch.setattr(conv_choice, "MEASURE_MIN_MACS", 0)
    rng = np.random.default_rng(0)
    xa, wa = (rng.standard_normal((4, 64, 56, 56)).astype(np.float32),
              rng.standard_normal((64, 64, 3, 3)).astype(np.float32))
    xb, wb = (rng.standard_normal((2, 32, 32, 32)).astype(np.float32),
              rng.standard_normal((32, 32, 3, 3)).astype(np.float32))
    done = []

    def other():
        time.sleep(0.05)
        with conv_choice.policy("measure"):       # a new thread starts in a new context
            parallel_map(lambda i: F.conv2d_forward(xb, wb, None, 1, 1), range(2))
        done.append("other")
    def measuring():
        with conv_choice.policy("measure"):
            F.conv2d_forward(xa, wa, None, 1, 1)
        done.append("measuring")
    # both in daemon threads, so that a deadlock fails the test instead of hanging it
    threads = [threading.Thread(target=f, daemon=True) for f in (measuring, other)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(done) == ["measuring", "other"], done
    assert any(key.endswith("@1t") for key in conv_choice.choices())   # measured in a worker
