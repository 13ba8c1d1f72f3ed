"""The evaluation metrics on cases whose answers are worked out by hand."""
import math

import numpy as np
import pytest

from minicnn.evaluate import metrics
from minicnn.evaluate.localization import summarise


def test_iou_of_known_boxes():
    assert metrics.iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    assert metrics.iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)
    assert metrics.iou([0, 0, 10, 10], [10, 0, 20, 10]) == 0.0       # touching, no overlap
    assert metrics.iou([0, 0, 4, 4], [1, 1, 3, 3]) == pytest.approx(4 / 16)
    assert metrics.iou(None, [0, 0, 1, 1]) == 0.0
    assert metrics.iou([2, 2, 2, 5], [2, 2, 2, 5]) == 0.0             # empty boxes


def test_pair_rule_needs_class_and_overlap():
    truth = [[0, 0, 10, 10]]
    assert metrics.pair_correct(3, [0, 0, 10, 10], 3, truth)
    assert not metrics.pair_correct(4, [0, 0, 10, 10], 3, truth)       # right box, wrong class
    assert not metrics.pair_correct(3, [5, 0, 15, 10], 3, truth)       # IoU 1/3
    assert metrics.pair_correct(3, [0, 0, 10, 20], 3, truth)           # IoU exactly 0.5
    assert not metrics.pair_correct(3, None, 3, truth)


def test_top5_rule_counts_a_right_box_for_the_third_class():
    truth = [[10, 10, 20, 20]]
    guesses = [(1, [10, 10, 20, 20]), (2, [0, 0, 5, 5]), (7, [11, 10, 20, 20]),
               (4, None), (5, [10, 10, 20, 20])]
    assert metrics.localisation_error(guesses[:1], 7, truth) == 1      # top-1: class 1 is wrong
    assert metrics.localisation_error(guesses, 7, truth) == 0          # 3rd pair is right
    assert metrics.localisation_error(guesses, 9, truth) == 1          # label not guessed


def test_several_true_boxes_any_one_suffices():
    truth = [[0, 0, 10, 10], [50, 50, 60, 70]]
    assert metrics.localisation_error([(0, [50, 52, 60, 70])], 0, truth) == 0
    assert metrics.best_iou([50, 52, 60, 70], truth) == pytest.approx(18 / 20)
    assert metrics.localisation_error([(0, [30, 30, 40, 40])], 0, truth) == 1


def test_pointing_game_hit_inside_near_and_far():
    box = [[10, 10, 20, 20]]
    assert metrics.pointing_hit((15, 15), box, 0)                      # inside
    assert metrics.pointing_hit((19, 19), box, 0)                      # last pixel inside
    assert not metrics.pointing_hit((20, 15), box, 0)                  # first pixel outside
    # pixel 24's centre is 24.5, 4.5 from the box edge at 20
    assert metrics.pointing_hit((24, 15), box, 4.5)
    assert not metrics.pointing_hit((24, 15), box, 4.4)
    # diagonal: centre (23.5, 23.5) is 3.5*sqrt(2) from the corner (20, 20)
    assert metrics.point_to_box_distance((23, 23), box[0]) == pytest.approx(3.5 * math.sqrt(2))
    assert metrics.pointing_hit((60, 60), box + [[55, 55, 70, 70]], 0)


def test_tolerance_scales_with_the_shorter_side():
    assert metrics.tolerance_pixels(15, (224, 224)) == 15
    assert metrics.tolerance_pixels(15, (500, 448)) == 30
    assert metrics.tolerance_pixels(15, (64, 64)) == pytest.approx(15 * 64 / 224)
    assert metrics.tolerance_pixels(15, (64, 64), reference=0) == 15


def test_class_mean_accuracy_weights_classes_not_images():
    labels = [0, 0, 0, 1]
    hits = [1, 1, 1, 0]
    assert metrics.class_mean_accuracy(labels, hits) == 0.5            # per image it is 0.75


def test_mask_iou_and_centred_box():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[:2] = True
    b[1:3] = True
    assert metrics.mask_iou(a, b) == pytest.approx(4 / 12)
    assert metrics.mask_iou(a, a) == 1.0
    with pytest.raises(ValueError):
        metrics.mask_iou(a, np.zeros((3, 3), bool))
    assert metrics.centred_box((100, 50), (0.5, 0.5)) == [25, 12, 75, 37]


def _record(label, top5, truth, boxes, point, size=(100, 100)):
    return {"image": f"im{label}", "label": label, "top5": top5, "true_boxes": truth,
            "boxes": {"gradient": {str(c): b for c, b in boxes.items()}},
            "points": {"gradient": point}, "size": list(size)}


def test_summary_of_hand_made_records():
    truth = [[40, 40, 60, 60]]
    records = [
        # right class, right box: no error; point inside
        _record(0, [0, 1, 2, 3, 4], truth, {0: [40, 40, 60, 60]}, [50, 50]),
        # label 3rd: top-1 error, top-5 right; point far away
        _record(1, [2, 3, 1, 4, 5], truth, {1: [41, 40, 60, 60]}, [0, 0]),
        # right class, wrong box: both errors; point just inside the tolerance
        _record(1, [1, 2, 3, 4, 5], truth, {1: [0, 0, 20, 20]}, [63, 50]),
        # label not in the top 5: both errors
        _record(2, [3, 4, 5, 6, 7], truth, {}, [50, 50]),
    ]
    # tolerance 15 px at 224 -> 15 * 100 / 224 = 6.70 px; pixel 63's centre is 3.5 away
    s = summarise(records, ["gradient"], tolerance=15, reference=224)
    assert s["n"] == 4
    means = ("top1", "top5")
    assert {k: s["localisation_error"]["gradient"][k] for k in means} == {"top1": 0.75, "top5": 0.5}
    # class 0: 1/1, class 1: 1/2, class 2: 1/1
    assert s["pointing_game"]["gradient"] == pytest.approx((1 + 0.5 + 1) / 3)
    # the centred baseline box is the mean true size (20x20), centred: [40, 40, 60, 60]
    assert s["centre_box_size"] == [0.2, 0.2]
    assert {k: s["localisation_error"]["centre_box"][k] for k in means} == {"top1": 0.5, "top5": 0.25}
    assert {k: s["localisation_error"]["full_image"][k] for k in means} == \
        {"top1": 1.0, "top5": 1.0}   # IoU 0.04
    assert s["pointing_game"]["centre_point"] == 1.0
    assert {k: s["classification_error"][k] for k in means} == {"top1": 0.5, "top5": 0.25}
    # each mean has its interval beside it, containing it
    lo, hi = s["localisation_error"]["gradient"]["top1_ci95"]
    assert lo <= 0.75 <= hi
    assert s["mask_iou"] == {}


def test_bootstrap_interval_has_the_normal_width_and_is_seeded():
    from minicnn.evaluate.metrics import ci95
    rng = np.random.default_rng(5)
    hits = rng.random(10000) < 0.4
    lo, hi = ci95(hits)
    p = hits.mean()
    half = 1.96 * np.sqrt(p * (1 - p) / len(hits))      # the normal approximation
    assert lo < p < hi and abs((hi - lo) / 2 - half) < 0.15 * half
    assert ci95(hits) == [lo, hi]                        # seeded: the same every run
    assert ci95(np.full(30, 0.25)) == [0.25, 0.25]
    assert ci95([1.0]) is None


def test_bootstrap_interval_of_a_paired_statistic_resamples_pairs():
    from minicnn.evaluate.metrics import ci95, class_mean_accuracy
    labels = np.repeat([0, 1], 500)
    hits = np.r_[np.ones(500), np.zeros(500)]      # class 0 always hit, class 1 never
    lo, hi = ci95((labels, hits), class_mean_accuracy)
    # pairs kept together: every resample has accuracy 1 in class 0 and 0 in class 1
    assert lo == hi == 0.5
