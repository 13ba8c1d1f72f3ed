"""Output folders that belong to one run at a time, and files in them that are the run's own.

An evaluation's ``--out`` and a training run's ``--run-dir`` are written over hours and
continued with ``--resume``. Two runs writing one folder would interleave their records,
and a file in it that is a symbolic link (or a FIFO, or a device) would make the run read
or write something outside the folder. So:

* :class:`FolderLock` holds an OS lock (``flock`` on ``DIR/.minicnn.lock``) for the run's
  lifetime; a second run is refused in one line naming the first (its pid and command).
  The OS drops the lock when the process ends, however it ends: no stale locks.
* :func:`regular_or_absent`, :func:`read_bounded` and :func:`open_append` touch a file only
  when it is a regular file (``O_NOFOLLOW``: never through a symbolic link; a FIFO is
  opened without blocking and refused) and read at most a stated number of bytes.
"""
import errno
import fcntl
import os
import stat

from .terminal import escape_controls

LOCK_NAME = ".minicnn.lock"
LOCK_NOTE_BYTES = 400      # what is read of another run's lock note


class FolderBusy(ValueError):
    """The folder is in use by another run."""


def _kind(mode):
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def regular_or_absent(path):
    """True when ``path`` is a regular file, False when nothing is there; ValueError for
    anything else (a symbolic link, even to a regular file, a FIFO, a folder, a device)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(mode):
        raise ValueError(f"{path}: is {_kind(mode)}; an output folder's files must be regular "
                         "files the run wrote (remove it, or choose another folder)")
    return True


def _open_regular(path, flags, mode=0o666, follow_links=False):
    """os.open without following a final symbolic link (unless ``follow_links``: a data
    folder may link to where its files live) and without blocking on a FIFO; the
    descriptor is returned only for a regular file."""
    nofollow = 0 if follow_links else os.O_NOFOLLOW
    try:
        fd = os.open(path, flags | nofollow | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0),
                     mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ValueError(f"{path}: is a symbolic link" + (" loop" if follow_links else
                             "; an output folder's files must be regular files the run "
                             "wrote")) from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise ValueError(f"{path}: is {_kind(st.st_mode)}; expected a regular file")
    if flags & (os.O_WRONLY | os.O_RDWR) and st.st_nlink > 1:
        # a hard link: writing would change the file it shares with another name
        os.close(fd)
        raise ValueError(f"{path}: has {st.st_nlink} names (hard links); an output "
                         "folder's files must be the run's own")
    os.set_blocking(fd, True)
    return fd


def read_bounded(path, limit, follow_links=False):
    """The bytes of the regular file ``path``, refused (ValueError, one line) when it holds
    more than ``limit`` bytes or is not a regular file (a symbolic link is refused unless
    ``follow_links``; what it leads to must be a regular file either way)."""
    fd = _open_regular(path, os.O_RDONLY, follow_links=follow_links)
    with os.fdopen(fd, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise ValueError(f"{path}: {size} bytes, more than the {limit} expected of it")
        data = f.read(limit + 1)
    if len(data) > limit:      # grew while being read
        raise ValueError(f"{path}: more than the {limit} bytes expected of it")
    return data


def open_append(path):
    """A binary file object appending to the regular file ``path`` (created if absent),
    never through a symbolic link."""
    fd = _open_regular(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    return os.fdopen(fd, "ab")


def truncate_regular(path, size):
    """Cut the regular file ``path`` to ``size`` bytes (never through a link)."""
    fd = _open_regular(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, size)
    finally:
        os.close(fd)


class FolderLock:
    """An exclusive lock on ``folder`` held until :meth:`release` or the process ends.

    ``what`` names the folder in messages (``--out DIR``); ``note`` (the run's command) is
    written into the lock file so that a refused run can say who holds the folder."""

    _fd = None

    def __init__(self, folder, what, note=""):
        self.folder = os.fspath(folder)
        path = os.path.join(self.folder, LOCK_NAME)
        fd = _open_regular(path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES, errno.EAGAIN):
                os.close(fd)
                raise OSError(exc.errno, f"cannot lock {what} ({exc.strerror}): its file "
                                         "system does not support flock; choose a folder "
                                         "on a local file system") from None
            holder = os.pread(fd, LOCK_NOTE_BYTES, 0).decode("utf-8", "replace")
            os.close(fd)
            holder = escape_controls(" ".join(holder.split())) or "unknown"
            raise FolderBusy(f"{what} is in use by another run ({holder}); wait for it to "
                             "finish or choose another folder") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}{': ' + note if note else ''}"[:LOCK_NOTE_BYTES].encode("utf-8", "replace"), 0)
        self._fd = fd

    def release(self):
        if self._fd is not None:
            os.close(self._fd)     # closing the descriptor drops the flock
            self._fd = None

    def __del__(self):            # a store dropped without close() frees its folder
        self.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
