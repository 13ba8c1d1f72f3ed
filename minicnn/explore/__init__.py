"""An explorer in the browser: look inside a network interactively (issue 15).

``python3 tools/explore.py`` serves a local page: pick an input, see the prediction,
the saliency maps of the three backward passes with the weakly supervised box, walk the
layers, click a unit for its reconstructions and top-activating crops, and compute the
class-model gallery of the classes picked (a page, a search, the image's top classes) in
the background. Everything is computed by :mod:`minicnn.viz`, as
the tools compute it; each section shows the command line that writes the same picture.

- :mod:`.core`: the Explorer: replicas, computations and their caches (no web code), over
  :mod:`.images` (input images), :mod:`.classes` (class names), :mod:`.gallery` (the
  class-model gallery's background jobs) and :mod:`.pictures` (the PNG pictures);
  :mod:`.settings` parses request parameters, :mod:`.errors` the refusals, :mod:`.cache`
  the LRU caches;
- :mod:`.app`: the Flask routes; :mod:`.server`: starting and stopping the server.

Needs the ``explore`` extra (``pip install -e '.[explore]'``: Flask).
"""
