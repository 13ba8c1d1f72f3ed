"""HDF5 members whose bytes live in the file itself.

HDF5 can make a file read other files: an external link names another file's object,
a dataset with external storage keeps its bytes in other (raw) files, and a virtual
dataset maps regions of datasets in other files. h5py follows all three silently, so a
weights file could copy any file on the machine into a converted model. Every HDF5
reader of minicnn (model files, Keras weights) reaches members through :func:`member`,
which follows only plain (hard) links and refuses such datasets.
"""
from .terminal import short


class NotLocal(ValueError):
    """An HDF5 member that would make us read another file (or a link we do not follow)."""


def check_dataset(ds):
    """Raise NotLocal when ``ds`` keeps its bytes outside the file."""
    if ds.external:
        raise NotLocal(f"dataset {short(str(ds.name))} keeps its data in external files "
                       f"(e.g. {short(str(ds.external[0][0]))}); refused: minicnn reads only "
                       "data stored in the file itself")
    if ds.is_virtual:
        raise NotLocal(f"dataset {short(str(ds.name))} is a virtual dataset (data mapped from "
                       "other files); refused: minicnn reads only data stored in the file "
                       "itself")
    return ds


def member(group, path):
    """``group[path]`` through plain links only, or None when it does not exist.

    Raises NotLocal for an external or soft link on the way, and for a dataset whose
    bytes do not live in the file."""
    import h5py
    node = group
    for part in (p for p in str(path).split("/") if p):
        if not isinstance(node, h5py.Group):
            return None
        link = node.get(part, getlink=True)
        if link is None:
            return None
        where = f"{node.name.rstrip('/')}/{part}"
        if isinstance(link, h5py.ExternalLink):
            raise NotLocal(f"{short(where)} is an external link to another file "
                           f"({short(str(link.filename))}); refused: minicnn reads only the given file")
        if not isinstance(link, h5py.HardLink):
            raise NotLocal(f"{short(where)} is a {type(link).__name__}; minicnn follows only "
                           "plain members of the file")
        node = node[part]
    if isinstance(node, h5py.Dataset):
        check_dataset(node)
    return node


# ----------------------------------------------------------------------------- isolation

class LibraryFailure(ValueError):
    """The HDF5 library crashed, hung or ran out of memory on a file (seen in a child)."""


# A crafted file can crash the HDF5 C library (a corrupt datatype message in a variable
# length string) or send it into an endless loop (a shifted global heap): no check made
# through the library can prevent that, since the check itself would run the library.
# So the read is first rehearsed in a forked child under a time and memory limit; the
# caller reads for real only when the child came back.
REHEARSAL_SECONDS = 10.0
REHEARSAL_BYTES_PER_SECOND = 20e6         # a cold disk: a 528 MB VGG16 gets 56 s more
REHEARSAL_MEMORY = 2 * 2**30              # plus three times the file size, above the parent's
MEMORY_EXIT = 3


def rehearse(path, read):
    """Run ``read(path)`` in a forked child first; raise LibraryFailure if the child is
    killed (a crash), exceeds its time, or runs out of memory. Exceptions raised by
    ``read`` itself count as coming back: the caller's real read raises them again.
    Without ``os.fork`` (Windows) nothing is rehearsed."""
    import os
    import signal
    import time
    if not hasattr(os, "fork"):
        return
    size = os.path.getsize(path)
    budget = REHEARSAL_SECONDS + size / REHEARSAL_BYTES_PER_SECOND
    from h5py._objects import phil
    # holding h5py's lock while forking: no other thread is inside HDF5 at that moment,
    # so the child cannot inherit a lock that nobody will release
    with phil:
        pid = os.fork()
        if pid == 0:                                  # the child: never returns
            code = 0
            try:
                import faulthandler
                import resource
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                faulthandler.disable()                   # a crash here is reported above
                resource.setrlimit(resource.RLIMIT_CORE, (0, 0))   # and leaves no core file
                _limit_memory(REHEARSAL_MEMORY + 3 * size)
                read(path)
            except MemoryError:
                code = MEMORY_EXIT
            except BaseException:
                pass
            os._exit(code)
    try:
        deadline = time.monotonic() + budget
        delay = 0.001
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                raise LibraryFailure(f"the HDF5 library did not finish reading the file "
                                     f"within {budget:.0f} s (a corrupt or hostile file)")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
    finally:
        if not done:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        name = signal.Signals(os.WTERMSIG(status)).name
        raise LibraryFailure(f"the HDF5 library crashed reading the file ({name}): a corrupt "
                             "or hostile file")
    if os.WEXITSTATUS(status) == MEMORY_EXIT:
        raise LibraryFailure("reading the file needs more memory than its size can justify "
                             "(a corrupt or hostile file)")


def _limit_memory(extra):
    """Address space of this (child) process: what it already maps plus ``extra``."""
    import resource
    with open("/proc/self/status") as fh:
        mapped = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmSize:"))
    limit = mapped + int(extra)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
