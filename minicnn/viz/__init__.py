"""The paper's visualisations (Simonyan, Vedaldi & Zisserman 2013) as functions.

- :func:`class_model`: class model visualisation by gradient ascent on S_c - lambda ||I||^2
- :func:`saliency`, :func:`tencrop_saliency`: image-specific class saliency
- :func:`unit_reconstruction`: Zeiler-Fergus reconstruction of one unit with each rule
- :func:`localize_map`: saliency -> GMM colour models -> GraphCut -> bounding box
- :func:`load_view`: the one way the tools read an image (or a preprocessed .npy)

The command-line tools in ``tools/`` are thin wrappers over these.
"""
from .class_model import ClassModel, ClassModelSettings, class_model, objective_and_gradient
from .deconv import ReconstructionSettings, UnitReconstruction, unit_reconstruction
from .inputs import View, load_view, resolve_class, resolve_classes
from .localize import BoxSettings, Localization, localize_map
from .saliency import Saliency, SaliencySettings, crop_saliency, saliency, tencrop_saliency

__all__ = ["BoxSettings", "ClassModel", "ClassModelSettings", "Localization", "Saliency",
           "ReconstructionSettings", "SaliencySettings", "UnitReconstruction", "View", "crop_saliency",
           "class_model", "load_view", "localize_map", "objective_and_gradient",
           "resolve_class", "resolve_classes", "saliency", "tencrop_saliency",
           "unit_reconstruction"]
