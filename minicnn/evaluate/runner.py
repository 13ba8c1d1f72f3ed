"""Running an evaluation over a data set: in this process or on Dask workers, with a
record file that survives interruption.

A *job* turns (net, item, index) into one JSON-able record. :func:`run` sends the
images to it in chunks, here (the default) or to a Dask cluster (``dask.distributed``:
a local cluster of worker processes, or an existing one given by its scheduler address),
and appends the records to ``DIR/records.jsonl`` in data order as chunks finish. The
file is flushed and synced after each chunk; ``resume=True`` keeps every complete record
(a line cut short by a killed machine is dropped and redone) and computes only the rest,
so no record is lost or written twice. ``DIR/run.json`` holds the settings the records
were made with; resuming with other settings is refused.
"""
import hashlib
import json
import os
import sys
import threading

RECORDS = "records.jsonl"
SKIPPED = "skipped.jsonl"
RUN = "run.json"
CONV = "conv_algorithms.json"     # the conv algorithms every process of the run uses

_NET_CACHE = {}


def file_digest(path):
    """SHA-256 of a file (to tell, on resume, whether the model is the same)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cached_net(path, device="cpu"):
    """The model at ``path``, loaded once per process (a Dask worker keeps it between
    chunks)."""
    from ..io import load
    st = os.stat(path)
    key = (os.path.abspath(path), device, st.st_mtime_ns, st.st_size)
    if key not in _NET_CACHE:
        _NET_CACHE.clear()
        _NET_CACHE[key] = load(path, device=device)
    return _NET_CACHE[key]


class Job:
    """What runs per image: ``evaluate(net, item, index) -> record`` on the model at
    ``model_path``. ``threads``: minicnn and BLAS threads inside a chunk (None: leave
    this process's settings). ``conv``: how every process picks the conv algorithms,
    {"policy": name} or {"policy": "measure", "choices": {key: algorithm}} (the table the
    main process measured, fixed for the run; None: this process's own policy)."""

    def __init__(self, model_path, evaluate, device="cpu", threads=None, conv=None):
        self.model_path = os.path.abspath(os.fspath(model_path))
        self.evaluate = evaluate
        self.device = device
        self.threads = threads
        self.conv = conv

    def with_threads(self, threads):
        return Job(self.model_path, self.evaluate, self.device, threads, self.conv)

    def with_conv(self, conv):
        return Job(self.model_path, self.evaluate, self.device, self.threads, conv)


def conv_context(conv):
    """The block in which a chunk runs under ``conv`` (see :class:`Job`)."""
    from contextlib import nullcontext
    from ..functional import conv_choice
    if conv is None:
        return nullcontext()
    if conv["policy"] == "measure":
        return conv_choice.frozen(conv.get("choices", {}))
    return conv_choice.policy(conv["policy"])


def run_chunk(job, source, indices):
    """Evaluate the items ``indices`` of ``source``. Returns [(index, key, record or None,
    error message or None)] in the order given; an unusable item gives its one-line
    error instead of a record."""
    from contextlib import nullcontext
    from threadpoolctl import threadpool_limits
    from .. import threads as minicnn_threads
    from .data import ItemError
    from ..preprocess import ImageError
    net = cached_net(job.model_path, job.device)
    out = []
    limit = threadpool_limits(job.threads) if job.threads else nullcontext()
    previous = minicnn_threads.get_threads()
    if job.threads:
        minicnn_threads.set_threads(job.threads)
    try:
        with limit, conv_context(job.conv):
            for index in indices:
                key = source.key(index)
                try:
                    # an image can also be refused while it is prepared for the network
                    # (an aspect ratio too extreme to resize), so evaluate is inside
                    record = job.evaluate(net, source.item(index), index)
                except (ItemError, ImageError) as exc:
                    out.append((index, key, None, " ".join(str(exc).split())))
                    continue
                out.append((index, key, record, None))
    finally:
        if job.threads:
            minicnn_threads.set_threads(previous)
    return out


# ----------------------------------------------------------------------------- records

MAX_RUN_BYTES = 1 << 20          # run.json: settings, a few KB
MAX_RECORD_BYTES = 1 << 30       # records.jsonl: ~1 KB a record, ILSVRC-val is 50 MB


class RecordStore:
    """``DIR/records.jsonl`` (one record per line) and ``DIR/skipped.jsonl`` (one
    {"image", "error"} per unusable image), with the settings in ``DIR/run.json``.

    The folder is locked for this run (:class:`~minicnn.outfolder.FolderLock`, released
    by :meth:`close` or when the process ends). Its files are read and written only when
    they are regular files (never through a symbolic link) and read only up to a bound;
    on ``resume`` everything is checked before anything is changed (``check(records)``
    raises ValueError for records this run would not write), and records without the
    ``run.json`` that says how they were made are refused, not adopted."""

    def __init__(self, folder, settings, resume=False, note="", check=None):
        from ..outfolder import FolderLock, regular_or_absent
        self.folder = os.fspath(folder)
        self.records_path = os.path.join(self.folder, RECORDS)
        self.skipped_path = os.path.join(self.folder, SKIPPED)
        run_path = os.path.join(self.folder, RUN)
        if os.path.lexists(self.folder) and not os.path.isdir(self.folder):
            raise ValueError(f"--out {self.folder}: exists and is not a folder")
        os.makedirs(self.folder, exist_ok=True)
        self.lock = FolderLock(self.folder, f"--out {self.folder}", note)
        try:
            present = {p: regular_or_absent(p)
                       for p in (run_path, self.records_path, self.skipped_path)}
            if (present[self.records_path] or present[self.skipped_path]) and not resume:
                raise ValueError(f"--out {self.folder} already holds an evaluation; pass "
                                 "--resume to continue it, or choose another --out")
            if present[run_path] and not resume:
                present[run_path] = False     # settings of a run that recorded nothing
            if present[run_path]:
                self._check_settings(run_path, settings)
            elif present[self.records_path] or present[self.skipped_path]:
                raise ValueError(f"--resume: {self.folder} holds records but no {RUN}: the "
                                 "settings they were made with are unknown; choose a new --out")
            self.records, records_end = self._read(self.records_path)
            self.skipped, skipped_end = self._read(self.skipped_path)
            if check is not None and self.records:
                check(self.records)       # the records are what this run writes
            if not present[run_path]:
                from ..io import atomic_write
                atomic_write(run_path, lambda tmp: _dump(tmp, settings))
            # only now, with everything checked: drop a line cut short by an interrupted
            # write (it is redone)
            from ..outfolder import truncate_regular
            for path, end in ((self.records_path, records_end), (self.skipped_path, skipped_end)):
                if end is not None:
                    truncate_regular(path, end)
        except BaseException:
            self.lock.release()
            raise
        self.done = {r["image"] for r in self.records}

    def conv_setting(self):
        """The run's conv algorithms ({"policy": ...[, "choices": {...}]}, see :class:`Job`)
        from ``DIR/conv_algorithms.json``; None when the run has none yet. Records made
        without that file (before the choice was measured) were made under the rule."""
        from ..outfolder import read_bounded, regular_or_absent
        from ..functional import conv_choice
        path = os.path.join(self.folder, CONV)
        if not regular_or_absent(path):
            return {"policy": "rule"} if (self.records or self.skipped) else None
        try:
            conv = json.loads(read_bounded(path, MAX_RUN_BYTES))
        except ValueError:
            conv = None
        if not (isinstance(conv, dict) and conv.get("policy") in conv_choice.POLICIES
                and isinstance(conv.get("choices", {}), dict)):
            raise ValueError(f"{path}: not the conv algorithms a run writes; cannot resume "
                             "(its records would not be reproduced); choose a new --out")
        return conv

    def save_conv_setting(self, conv):
        from ..io import atomic_write
        atomic_write(os.path.join(self.folder, CONV), lambda tmp: _dump(tmp, conv))

    def close(self):
        """Release the folder for other runs."""
        self.lock.release()

    @staticmethod
    def _check_settings(run_path, settings):
        from ..outfolder import read_bounded
        try:
            old = json.loads(read_bounded(run_path, MAX_RUN_BYTES))
        except ValueError as exc:
            if str(exc).startswith(run_path):
                raise
            raise ValueError(f"{run_path}: not valid JSON; cannot resume") from None
        if not isinstance(old, dict):
            raise ValueError(f"{run_path}: holds a JSON {type(old).__name__}, not the settings "
                             "object a run writes; cannot resume")
        changed = _differences(old, settings)
        if changed:
            raise ValueError(f"--resume: {run_path} was made with other settings ("
                             + "; ".join(changed[:3]) + (f"; {len(changed) - 3} more"
                                                         if len(changed) > 3 else "")
                             + "); use the same ones or a new --out")

    @staticmethod
    def _read(path):
        """(complete records of a JSON-lines file, the length to cut it to or None): a
        last line cut short by an interrupted write is left out (the caller cuts it)."""
        from ..outfolder import read_bounded
        if not os.path.lexists(path):
            return [], None
        data = read_bounded(path, MAX_RECORD_BYTES)
        end = data.rfind(b"\n") + 1
        out, seen = [], set()
        for number, line in enumerate(data[:end].splitlines(), 1):
            try:
                rec = json.loads(line)
            except ValueError:
                raise ValueError(f"{path}: line {number} is not valid JSON; cannot resume") from None
            if not isinstance(rec, dict) or not isinstance(rec.get("image"), str):
                raise ValueError(f"{path}: line {number} is not a record; cannot resume")
            if rec["image"] in seen:
                raise ValueError(f"{path}: {one_line(repr(rec['image'][:200]))} is recorded "
                                 "twice; cannot resume")
            seen.add(rec["image"])
            out.append(rec)
        return out, (end if end < len(data) else None)

    def append(self, results):
        """Write the results of one chunk [(index, key, record, error)] and sync."""
        from ..outfolder import open_append
        recs = [r for _, _, r, _ in results if r is not None]
        errs = [{"image": k, "error": e} for _, k, r, e in results if r is None]
        for path, rows, keep in ((self.records_path, recs, self.records),
                                 (self.skipped_path, errs, self.skipped)):
            if not rows:
                continue
            with open_append(path) as f:
                f.write("".join(json.dumps(r, separators=(",", ":")) + "\n"
                                for r in rows).encode())
                f.flush()
                os.fsync(f.fileno())
            keep.extend(rows)
        self.done.update(r["image"] for r in recs)


def _differences(old, new, prefix=""):
    """["key: old -> new", ...] for the settings that differ (nested dicts by dotted key)."""
    from ..terminal import short
    out = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key, "(absent)"), new.get(key, "(absent)")
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{one_line(str(key))}: {one_line(short(a, 60))} -> "
                       f"{one_line(short(b, 60))}")
    return out


def _dump(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


# ----------------------------------------------------------------------------- schedulers

def _chunks(indices, size):
    return [indices[i:i + size] for i in range(0, len(indices), size)]


def _local_results(job, source, chunks):
    for number, chunk in enumerate(chunks):
        yield number, run_chunk(job, source, chunk)


def _dask_results(job, source, chunks, client):
    from dask.distributed import as_completed
    job_f, source_f = client.scatter([job, source], broadcast=True)
    futures = {client.submit(run_chunk, job_f, source_f, chunk, pure=False): number
               for number, chunk in enumerate(chunks)}
    try:
        for future in as_completed(futures):
            yield futures[future], future.result()
    finally:
        for future in futures:
            future.cancel()


SCHEDULER_DEADLINE_S = 30      # connect, handshake and the scheduler's first answer


def scheduler_address(text):
    """``tcp://HOST:PORT`` (or ``tls://``) checked before any work: ValueError, one line,
    for anything else (an empty value, ``inproc://``, a port outside 1-65535)."""
    import re
    match = re.fullmatch(r"(tcp|tls)://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):([0-9]{1,5})",
                         text or "")
    if not match or not 1 <= int(match.group(3)) <= 65535:
        raise ValueError(f"expected tcp://HOST:PORT (a Dask scheduler; port 1-65535), got "
                         f"{one_line(repr(text))[:120]}")
    return text


def _connect(scheduler, deadline_s):
    """A Client of the scheduler, or ValueError (one line) when none answers as a Dask
    scheduler within ``deadline_s``: Dask's own timeout covers the TCP connect only, and
    a peer that accepts and never answers would be waited on for ever, so the whole
    connection runs in a thread that is given up on at the deadline."""
    import socket
    import time
    from dask.distributed import Client
    host, port = scheduler.split("://", 1)[1].rsplit(":", 1)
    start = time.monotonic()
    try:      # a quick, clear answer when nothing listens there
        socket.create_connection((host.strip("[]"), int(port)), timeout=deadline_s).close()
    except OSError as exc:
        raise ValueError(f"--scheduler {scheduler}: cannot connect "
                         f"({exc.strerror or type(exc).__name__})") from None
    left = max(1.0, deadline_s - (time.monotonic() - start))   # one deadline for it all
    box = {}

    def connect():
        try:
            box["client"] = Client(scheduler, timeout=f"{left}s")
        except BaseException as exc:      # garbage from the peer: MemoryError, ValueError ...
            box["error"] = exc
    thread = threading.Thread(target=connect, name="dask-connect", daemon=True)
    thread.start()
    thread.join(left)
    if thread.is_alive():
        raise ValueError(f"--scheduler {scheduler}: no Dask scheduler answered within "
                         f"{deadline_s} s")
    if "error" in box:
        exc = box["error"]
        if isinstance(exc, KeyboardInterrupt):
            raise exc
        detail = " ".join(str(exc).split())[:120]
        raise ValueError(f"--scheduler {scheduler}: no Dask scheduler there "
                         f"({type(exc).__name__}{': ' + detail if detail else ''})") from None
    return box["client"]


def dask_client(workers=None, scheduler=None, deadline_s=SCHEDULER_DEADLINE_S):
    """A Dask client: ``scheduler`` (tcp://HOST:PORT of a running cluster, answered within
    ``deadline_s``) or a local cluster of ``workers`` processes with one thread each,
    listening on 127.0.0.1. Returns (client, cluster or None)."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise ImportError("--workers / --scheduler need Dask: pip install -e '.[dask]'",
                          name="distributed") from None
    import logging
    if scheduler is not None:
        client, cluster = _connect(scheduler_address(scheduler), deadline_s), None
    else:
        # Ctrl-C reaches every process of the terminal's group: the workers are started
        # with SIGINT ignored (inherited through spawn), so that this process alone stops
        # the run and closes the cluster, instead of each worker dying with a traceback
        import signal
        main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main_thread else None
        try:
            cluster = LocalCluster(n_workers=int(workers), threads_per_worker=1,
                                   processes=True, host="127.0.0.1",
                                   dashboard_address="127.0.0.1:0",   # no fixed port: no clash
                                   # task errors come back through the futures; the
                                   # workers of a cluster being closed log only noise
                                   silence_logs=logging.CRITICAL)
        finally:
            if main_thread:
                signal.signal(signal.SIGINT, previous)
        client = Client(cluster)
    return client, cluster


def one_line(text):
    """See :func:`minicnn.terminal.one_line`."""
    from ..terminal import one_line as line
    return line(text)


def run_conv_setting(job, source, store, first):
    """How every process of this run picks its conv algorithms (see :class:`Job`), fixed
    once and kept in the run folder so that a resumed run, and every worker, computes
    each record as the first process did. Under the "measure" policy this process
    measures them on item ``first`` (its record is computed again with the table)."""
    from ..functional import conv_choice
    conv = store.conv_setting()
    if conv is None:
        name = conv_choice.conv_policy()
        conv = {"policy": name}
        if name == "measure" and job.device == "cpu":
            with conv_choice.recording() as table:
                run_chunk(job.with_conv(None), source, [first])
            conv["choices"] = dict(sorted(table.items()))
        store.save_conv_setting(conv)
    return conv


def run(job, source, store, limit=None, chunk_size=8, workers=None, scheduler=None,
        progress=True, out=sys.stderr, desc="images"):
    """Evaluate the first ``limit`` items of ``source`` not yet in ``store``.

    workers / scheduler: Dask (see :func:`dask_client`); neither: this process. Records
    are appended in data order as chunks finish. Returns the store."""
    from tqdm import tqdm
    total = len(source) if limit is None else min(int(limit), len(source))
    finished = store.done | {s["image"] for s in store.skipped}
    pending = [i for i in range(total) if source.key(i) not in finished]
    chunks = _chunks(pending, max(1, int(chunk_size)))
    bar = tqdm(total=total, initial=total - len(pending), unit="img", desc=desc,
               disable=not progress, file=out, dynamic_ncols=True)
    client = cluster = results = None
    distributed = bool(workers or scheduler is not None)
    try:
        if pending:
            job = job.with_conv(run_conv_setting(job.with_threads(1) if distributed else job,
                                                 source, store, pending[0]))
        if distributed:
            client, cluster = dask_client(workers, scheduler)
            results = _dask_results(job.with_threads(1), source, chunks, client)
        else:
            results = _local_results(job, source, chunks)
        waiting, next_chunk = {}, 0
        for number, result in results:
            waiting[number] = result
            while next_chunk in waiting:          # keep the file in data order
                chunk = waiting.pop(next_chunk)
                store.append(chunk)
                for _, key, rec, err in chunk:
                    if rec is None:
                        bar.write(one_line(f"skipped {key}: {err}"), file=out)
                bar.update(len(chunk))
                next_chunk += 1
    finally:
        bar.close()
        if results is not None:
            # cancel the outstanding futures now, while the client runs: left to the
            # garbage collector, the generator's cleanup met a closed event loop and
            # printed a traceback after Ctrl-C
            results.close()
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
    return store
