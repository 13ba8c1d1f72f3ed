"""The command-line tools, one module each with ``main(argv)`` and ``entry()``.

``tools/NAME.py`` runs ``minicnn.commands.NAME``; ``pip install`` also installs each as a
command (``minicnn-saliency``, ``minicnn-localize``, ...; see setup.py).
"""
