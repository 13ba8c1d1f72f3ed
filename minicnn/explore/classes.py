"""A model's class names: index -> name, and finding classes by index, name or synonym
(ImageNet's names list several: "tabby, tabby cat")."""
import math
import re

from ..viz.inputs import resolve_class
from .errors import RequestError


class ClassNames:
    """The class names of ``net`` (``names``: one a class, "class I" where the model has
    none), searched case-insensitively."""

    def __init__(self, net):
        self.net = net
        names = net.class_names
        self.names = [names[i] if i < len(names) else f"class {i}"
                      for i in range(net.num_classes)]
        self._lowered = [n.lower() for n in self.names]
        # a name's synonyms: ImageNet's names list several ("tabby, tabby cat")
        self._synonyms = [[w.strip() for w in n.split(",") if w.strip()]
                          for n in self._lowered]

    def search(self, query, page, per_page):
        """Classes whose name matches ``query`` (case-insensitive): an index, a whole name
        or one of its comma-separated synonyms first, then names with a word starting with
        the query, then names containing it; each group in index order. An empty query
        lists every class. Paged: ``page`` (from 1) of ``per_page``. Returns a JSON-able
        dict."""
        q = " ".join(str(query or "").lower().split())
        if not q:
            found = list(range(len(self.names)))
        else:
            ranked = ((self._rank(q, i), i) for i in range(len(self.names)))
            found = [i for _, i in sorted(r for r in ranked if r[0] is not None)]
        pages = max(1, math.ceil(len(found) / per_page))
        page = min(max(1, int(page)), pages)
        chosen = found[(page - 1) * per_page:page * per_page]
        return {"query": str(query or ""), "total": len(found), "page": page, "pages": pages,
                "per_page": per_page,
                "classes": [{"class": i, "name": self.names[i]} for i in chosen]}

    def _rank(self, q, index):
        """How well class ``index`` matches the lowered query ``q``: 0 the index, the name
        or a synonym; 1 a word starts with it; 2 the name contains it; None no match."""
        name, words = self._lowered[index], self._synonyms[index]
        if q == str(index) or q == name or q in words:
            return 0
        if any(w.startswith(q) for w in re.split(r"[\s,\-'()/]+", name) if w) \
                or name.startswith(q):
            return 1
        if q in name:
            return 2
        return None

    def find(self, spec):
        """A class given as an index, "INDEX: name" (what the page's lists show), a whole
        name or one synonym of a name (case-insensitive) -> index; RequestError naming
        the candidates when a synonym names several classes ("crane") or the close
        matches when nothing matches."""
        text = str(spec).strip()
        head = re.match(r"^(-?\d+)\s*(:.*)?$", text)
        if head:
            try:
                return resolve_class(self.net, head.group(1))
            except ValueError as exc:
                raise RequestError(str(exc)) from None
        q = " ".join(text.lower().split())
        for hits in ([i for i, name in enumerate(self._lowered) if name == q],
                     [i for i, words in enumerate(self._synonyms) if q in words]):
            if len(hits) == 1:
                return hits[0]
            if hits:
                listed = ", ".join(f"{i} ({self.names[i]})" for i in hits[:10])
                raise RequestError(f"class {text[:60]!r} names {len(hits)} classes: "
                                   f"{listed}; give the index")
        try:
            return resolve_class(self.net, text)        # its error names close matches
        except ValueError as exc:
            raise RequestError(str(exc)) from None
