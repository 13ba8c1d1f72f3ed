"""The explorer's result caches: a small thread-safe LRU map that computes each key once."""
import threading
from collections import OrderedDict


class LRU:
    """A small thread-safe least-recently-used map. Values are computed outside the lock;
    a request for a key that another thread is computing waits for that result instead
    of computing it again (a new image's prediction and saliency ask for the same logits
    at once). When that computation fails, the waiting thread computes it itself."""

    def __init__(self, size):
        self.size, self._data, self._lock = int(size), OrderedDict(), threading.Lock()
        self._pending = {}      # key -> Event set when its computation ends

    def get(self, key, compute):
        while True:
            with self._lock:
                if key in self._data:
                    self._data.move_to_end(key)
                    return self._data[key]
                pending = self._pending.get(key)
                if pending is None:
                    done = self._pending[key] = threading.Event()
                    break
            pending.wait()
        try:
            value = compute()
            with self._lock:
                self._data[key] = value
                self._data.move_to_end(key)
                while len(self._data) > self.size:
                    self._data.popitem(last=False)
            return value
        finally:
            with self._lock:
                del self._pending[key]
            done.set()

    def put(self, key, value):
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)

    def clear(self):
        with self._lock:
            self._data.clear()

