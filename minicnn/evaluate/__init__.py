"""Measuring saliency maps over data sets.

- :mod:`.metrics`: IoU, the ILSVRC localisation-error rule, the pointing game, mask IoU
  (pure functions of boxes, points and masks);
- :mod:`.data`: the data sets (the shipped model's cluttered test canvases; folders in
  the ILSVRC / Pascal-VOC layout);
- :mod:`.localization`: per-image records of boxes and points, and their summary;
- :mod:`.runner`: chunks of images in this process or on Dask workers, with a record
  file that an interrupted run resumes;
- :mod:`.report`: the Markdown table and the best / worst figure.

``tools/evaluate.py`` is the command line over these.
"""
from .data import BoxFolder, ClutteredTest, Item, ItemError, open_source
from .localization import LocalizeSettings, METHODS, class_maps, evaluate_item, summarise
from .metrics import (centred_box, class_mean_accuracy, iou, localisation_error, mask_iou,
                      pair_correct, pointing_hit, tolerance_pixels)
from .runner import Job, RecordStore, run

__all__ = ["BoxFolder", "ClutteredTest", "Item", "ItemError", "open_source",
           "LocalizeSettings", "METHODS", "class_maps", "evaluate_item", "summarise",
           "centred_box", "class_mean_accuracy", "iou", "localisation_error", "mask_iou",
           "pair_correct", "pointing_hit", "tolerance_pixels", "Job", "RecordStore", "run"]
