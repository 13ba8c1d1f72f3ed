"""The class-model gallery: which classes a gallery shows (a page of a large model, never
all of its classes) and the background jobs that compute them.

A gallery runs in a background thread on a replica of its own, so it never blocks the
interactive requests; one job at a time, kept per settings and classes."""
import logging
import math
import re
import threading
import time
import traceback
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ..viz.batching import examples_per_batch
from ..viz.class_model import BATCH_BYTES, class_model, default_classes
from .errors import RequestError, out_of_memory_line
from .settings import ClassModelSettings, parse_int

log = logging.getLogger("minicnn.explore")

MAX_GALLERY_CLASSES = 20    # class models one gallery may ask for (one page of the picker)
GALLERY_PAGE = 10           # classes per picker page of a model with more than that many
MAX_JOBS = 16               # galleries kept (the oldest finished ones forgotten first)
MAX_WAITING = 3             # galleries queued behind the running one; more: 429 busy


@dataclass
class ClassModelJob:
    """A gallery computation of ``classes`` (tuple of indices) with ``settings``: state
    queued|running|done|failed|cancelled, progress in steps (done of total; a batch of
    classes after another counts its steps again), result (ClassModel) when done, error
    (one line) when failed."""
    settings: ClassModelSettings
    classes: tuple = ()
    state: str = "queued"
    done: int = 0
    total: int = 0
    result: object = None
    error: str = ""
    started: float = 0.0
    finished: float = 0.0
    created: float = field(default_factory=time.time)

    def status(self):
        elapsed = (self.finished or time.time()) - self.started if self.started else 0.0
        return {"state": self.state, "done": self.done, "total": self.total,
                "error": self.error, "elapsed_s": round(elapsed, 2)}


class _Cancelled(Exception):
    pass



class Gallery:
    """The galleries of ``net``: picking their classes, starting and keeping their jobs.

    closing: an Event that, once set, cancels the running job and any queued one."""

    def __init__(self, net, closing):
        self.net = net
        self._closing = closing
        self._jobs = OrderedDict()             # (ClassModelSettings, classes) -> ClassModelJob
        self._jobs_lock = threading.Lock()
        self._runner = ThreadPoolExecutor(1, thread_name_prefix="class-models")
        self._default = self._choose_default()

    def close(self):
        """Wait for the running job (cancelled once ``closing`` is set); drop queued ones."""
        self._runner.shutdown(wait=True, cancel_futures=True)

    def page_size(self):
        """Classes per picker page: every class of a model with at most
        MAX_GALLERY_CLASSES, else GALLERY_PAGE."""
        k = self.net.num_classes
        return k if k <= MAX_GALLERY_CLASSES else GALLERY_PAGE

    def default(self):
        """(classes, what): the gallery shown before any class is picked: every class of
        a small model; else the classes tools/class_model.py draws by default when they
        fit a gallery (ImageNet's names: the paper's Fig. 1 classes); else the first
        page."""
        return self._default

    def _choose_default(self):
        k = self.net.num_classes
        if k <= MAX_GALLERY_CLASSES:
            return tuple(range(k)), f"all {k} classes"
        tool = tuple(int(c) for c in default_classes(self.net))
        if 0 < len(tool) <= MAX_GALLERY_CLASSES:
            return tool, "the paper's Fig. 1 classes (tools/class_model.py's default)"
        return tuple(range(GALLERY_PAGE)), f"classes 0-{GALLERY_PAGE - 1}"

    def info(self):
        """JSON-able facts for the page's class picker: page size, limit, default gallery."""
        classes, what = self.default()
        return {"page_size": self.page_size(), "max_classes": MAX_GALLERY_CLASSES,
                "default_classes": list(classes), "default_label": what,
                "pages": math.ceil(self.net.num_classes / self.page_size())}

    def classes(self, value):
        """A request's classes (indices separated by commas or spaces, or a list; empty:
        :meth:`default`) -> tuple of distinct indices in the given order, at most
        MAX_GALLERY_CLASSES: a gallery never optimises every class of a large model."""
        if isinstance(value, (list, tuple)):
            items = [str(v) for v in value]
        else:
            items = re.split(r"[\s,]+", str(value or "").strip())
        out = []
        for item in items:
            if item:
                index = parse_int(item, "classes", 0, self.net.num_classes - 1)
                if index not in out:
                    out.append(index)
        if not out:
            return self.default()[0]
        if len(out) > MAX_GALLERY_CLASSES:
            raise RequestError(f"classes: at most {MAX_GALLERY_CLASSES} class models per "
                               f"gallery, got {len(out)}; pick a page or fewer classes")
        return tuple(out)

    def job(self, settings, classes=None, start=True):
        """The gallery job for ``settings`` and ``classes`` (a tuple from
        :meth:`classes`; None: the default gallery), started when new and
        ``start``, or None."""
        classes = self.default()[0] if classes is None else tuple(classes)
        key = (settings, classes)
        with self._jobs_lock:
            job = self._jobs.get(key)
            if job is not None and job.state in ("failed", "cancelled") and start:
                job = None
            if job is None and start:
                waiting = sum(j.state == "queued" for j in self._jobs.values())
                if waiting >= MAX_WAITING:
                    raise RequestError(f"busy: {waiting} class-model galleries are already "
                                       "waiting behind the running one; try again when one "
                                       "has finished", 429)
                batches = math.ceil(len(classes) / examples_per_batch(self.net, BATCH_BYTES))
                job = ClassModelJob(settings, classes, total=batches * (settings.steps + 1))
                self._jobs[key] = job
                self._forget_finished()
                self._runner.submit(self._run, job)
            return job

    def _forget_finished(self):
        """Keep at most MAX_JOBS galleries, forgetting the oldest finished ones (the
        caller holds the lock; running and queued jobs are kept)."""
        while len(self._jobs) > MAX_JOBS:
            old = next((k for k, j in self._jobs.items()
                        if j.state in ("done", "failed", "cancelled")), None)
            if old is None:
                break
            del self._jobs[old]

    def _run(self, job):
        if self._closing.is_set():
            job.state = "cancelled"
            return
        job.state, job.started = "running", time.time()
        net = self._counting_replica(job)
        try:
            job.result = class_model(net, list(job.classes), job.settings.for_viz())
            job.done, job.state = job.total, "done"
        except _Cancelled:
            job.state = "cancelled"
        except Exception as exc:        # a background thread: nobody else would see it
            job.state, job.error = "failed", self._failure_line(job, exc)
        finally:
            job.finished = time.time()

    def _counting_replica(self, job):
        """A replica of the net whose forward counts ``job``'s progress and stops it
        (_Cancelled) once closing is set."""
        net = self.net.replica()
        plain_forward = net.forward

        def counted_forward(x, until=None):
            # class_model calls forward once per step and once at the end of each batch
            if self._closing.is_set():
                raise _Cancelled()
            out = plain_forward(x, until)
            job.done = min(job.done + 1, job.total)
            return out

        net.forward = counted_forward
        return net

    def _failure_line(self, job, exc):
        """The one line a failed job reports; unexpected errors go to the log in full."""
        if isinstance(exc, MemoryError):
            shape = "x".join(map(str, self.net.input_shape))
            return out_of_memory_line(exc, f"{len(job.classes)} class models of {shape}",
                                      "pick fewer classes")
        if isinstance(exc, (ValueError, RuntimeError)):
            return " ".join(str(exc).split()) or type(exc).__name__
        log.error("class models failed: %s", "".join(
            traceback.format_exception(type(exc), exc, exc.__traceback__)))
        return f"internal error ({type(exc).__name__}); see the server's log"
