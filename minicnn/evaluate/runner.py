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

RECORDS = "records.jsonl"
SKIPPED = "skipped.jsonl"
RUN = "run.json"

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
    this process's settings)."""

    def __init__(self, model_path, evaluate, device="cpu", threads=None):
        self.model_path = os.path.abspath(os.fspath(model_path))
        self.evaluate = evaluate
        self.device = device
        self.threads = threads

    def with_threads(self, threads):
        return Job(self.model_path, self.evaluate, self.device, threads)


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
        with limit:
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

class RecordStore:
    """``DIR/records.jsonl`` (one record per line) and ``DIR/skipped.jsonl`` (one
    {"image", "error"} per unusable image), with the settings in ``DIR/run.json``."""

    def __init__(self, folder, settings, resume=False):
        self.folder = os.fspath(folder)
        self.records_path = os.path.join(self.folder, RECORDS)
        self.skipped_path = os.path.join(self.folder, SKIPPED)
        run_path = os.path.join(self.folder, RUN)
        if os.path.exists(self.folder) and not os.path.isdir(self.folder):
            raise ValueError(f"--out {self.folder}: exists and is not a folder")
        os.makedirs(self.folder, exist_ok=True)
        existing = os.path.exists(self.records_path) or os.path.exists(run_path)
        if existing and not resume:
            raise ValueError(f"--out {self.folder} already holds an evaluation; pass --resume "
                             "to continue it, or choose another --out")
        if resume and os.path.exists(run_path):
            with open(run_path) as f:
                try:
                    old = json.load(f)
                except ValueError:
                    raise ValueError(f"{run_path}: not valid JSON; cannot resume") from None
            changed = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
            if changed:
                raise ValueError(f"--resume: {run_path} was made with other settings "
                                 f"({', '.join(changed)}); use the same ones or a new --out")
        else:
            from ..io import atomic_write
            atomic_write(run_path, lambda tmp: _dump(tmp, settings))
        self.records = self._read(self.records_path)
        self.skipped = self._read(self.skipped_path)
        self.done = {r["image"] for r in self.records}

    @staticmethod
    def _read(path):
        """Complete lines of a JSON-lines file; a last line cut short by an interrupted
        write is removed from the file."""
        if not os.path.exists(path):
            return []
        with open(path, "rb") as f:
            data = f.read()
        end = data.rfind(b"\n") + 1
        if end < len(data):                  # a torn last line: drop it, it is redone
            with open(path, "r+b") as f:
                f.truncate(end)
        out, seen = [], set()
        for number, line in enumerate(data[:end].splitlines(), 1):
            try:
                rec = json.loads(line)
            except ValueError:
                raise ValueError(f"{path}: line {number} is not valid JSON; cannot resume") from None
            if not isinstance(rec, dict) or not isinstance(rec.get("image"), str):
                raise ValueError(f"{path}: line {number} is not a record; cannot resume")
            if rec["image"] in seen:
                raise ValueError(f"{path}: {rec['image']!r} is recorded twice; cannot resume")
            seen.add(rec["image"])
            out.append(rec)
        return out

    def append(self, results):
        """Write the results of one chunk [(index, key, record, error)] and sync."""
        recs = [r for _, _, r, _ in results if r is not None]
        errs = [{"image": k, "error": e} for _, k, r, e in results if r is None]
        for path, rows, keep in ((self.records_path, recs, self.records),
                                 (self.skipped_path, errs, self.skipped)):
            if not rows:
                continue
            with open(path, "a") as f:
                f.write("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows))
                f.flush()
                os.fsync(f.fileno())
            keep.extend(rows)
        self.done.update(r["image"] for r in recs)


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


def dask_client(workers=None, scheduler=None):
    """A Dask client: ``scheduler`` (tcp://HOST:PORT of a running cluster) or a local
    cluster of ``workers`` processes with one thread each, listening on 127.0.0.1.
    Returns (client, cluster or None)."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise ImportError("--workers / --scheduler need Dask: pip install -e '.[dask]'",
                          name="distributed") from None
    import logging
    if scheduler:
        client, cluster = Client(scheduler, timeout="20s"), None
    else:
        cluster = LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=None,
                               silence_logs=logging.ERROR)
        client = Client(cluster)
    return client, cluster


def one_line(text):
    """``text`` safe for the terminal as one line: control characters (from file names)
    and line breaks shown as \\xNN / \\n instead of acting."""
    from ..terminal import escape_controls
    return escape_controls(text).replace("\n", "\\n").replace("\r", "\\r")


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
    client = cluster = None
    try:
        if workers or scheduler:
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
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
    return store
