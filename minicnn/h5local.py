"""HDF5 members whose bytes live in the file itself.

HDF5 can make a file read other files: an external link names another file's object,
a dataset with external storage keeps its bytes in other (raw) files, and a virtual
dataset maps regions of datasets in other files. h5py follows all three silently, so a
weights file could copy any file on the machine into a converted model. Every HDF5
reader of minicnn (model files, Keras weights) reaches members through :func:`member`,
which follows only plain (hard) links and refuses such datasets.
"""


class NotLocal(ValueError):
    """An HDF5 member that would make us read another file (or a link we do not follow)."""


def _short(text, limit=80):
    text = str(text)
    return repr(text if len(text) <= limit else text[:limit] + "...")


def check_dataset(ds):
    """Raise NotLocal when ``ds`` keeps its bytes outside the file."""
    if ds.external:
        raise NotLocal(f"dataset {_short(ds.name)} keeps its data in external files "
                       f"(e.g. {_short(ds.external[0][0])}); refused: minicnn reads only "
                       "data stored in the file itself")
    if ds.is_virtual:
        raise NotLocal(f"dataset {_short(ds.name)} is a virtual dataset (data mapped from "
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
            raise NotLocal(f"{_short(where)} is an external link to another file "
                           f"({_short(link.filename)}); refused: minicnn reads only the given file")
        if not isinstance(link, h5py.HardLink):
            raise NotLocal(f"{_short(where)} is a {type(link).__name__}; minicnn follows only "
                           "plain members of the file")
        node = node[part]
    if isinstance(node, h5py.Dataset):
        check_dataset(node)
    return node
