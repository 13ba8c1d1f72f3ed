"""Why the unnormalised score? The paper (Sect. 2) maximises S_c rather than the softmax
probability P_c, because P_c can be raised by pushing the other classes' scores down. This
optimises the class model of every class with each objective (same steps, regulariser,
seed and start) and reports the final S_c, P_c and the other classes' scores."""
import numpy as np

from ..viz.class_model import OBJECTIVES, class_model, softmax


def compare_objectives(net, classes, objectives=OBJECTIVES, progress=False, **settings):
    """{objective: ClassModel} and the per-class rows of class_objective.json:
    [{"class", "objectives": {objective: {"S_c", "P_c", "others_mean", "others_max"}}}].
    ``settings`` go to :func:`minicnn.viz.class_model` unchanged for every objective."""
    results, rows = {}, [{"class": int(c), "objectives": {}} for c in classes]
    for objective in objectives:
        res = class_model(net, classes, objective=objective, progress=progress, **settings)
        results[objective] = res
        probs = softmax(res.logits)
        for k, c in enumerate(classes):
            others = np.delete(res.logits[k], int(c))
            rows[k]["objectives"][objective] = {
                "S_c": float(res.logits[k, c]), "P_c": float(probs[k, c]),
                "others_mean": float(others.mean()), "others_max": float(others.max())}
    return results, rows


def means(rows, objectives):
    """Mean over classes of each number, per objective."""
    keys = ("S_c", "P_c", "others_mean", "others_max")
    return {o: {key: float(np.mean([r["objectives"][o][key] for r in rows])) for key in keys}
            for o in objectives}
