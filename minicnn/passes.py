"""The pass planner: what a :class:`minicnn.net.Net` pass calls each layer with.

The speed machinery of a pass lives here, behind one door: which layer may overwrite its
input, which fuses the next ReLU into its own output. A pass asks :func:`forward_plan` /
:func:`backward_plan` for the keyword arguments of each layer call and calls the layer's
plain ``forward`` / ``backward`` with them; in :func:`minicnn.reference_mode` both plans
are empty, so every layer runs its plain interface (:class:`minicnn.layers.Layer`).

The speed flags a layer may set, and what they promise:

Working in place, inside a :class:`minicnn.net.Net` pass: a layer whose
``fresh_output`` (``fresh_signal``) is True returns from ``forward`` (``backward``) a
new array that it does not keep, so nothing but the next layer of the pass reads it.
A layer with ``in_place`` True accepts ``overwrite=True`` in ``forward`` and
``backward``, which the net passes when its input is such an array: it may then
write its result into it (a ReLU after a linear layer rectifies its output where it
lies) instead of into a new array, which saves the memory traffic and the
allocation. Called directly, layers never overwrite their input.

Fusing a ReLU: a layer with ``fuses_relu`` True accepts ``relu=True`` in ``forward``
and then returns max(output, 0), rectified while each part is still in cache. The
net passes it when the next layer is a :class:`ReLU` that the pass runs, and runs
that ReLU with ``rectified=True``: it keeps the array as its output (and backward
mask) without a pass of its own.

The planner believes these flags only while the layer runs the very method the class
that set them defines (:func:`runs_own`): a subclass that overrides ``forward`` or
``backward`` (to keep its output, say) and a hook put on an instance run with the
plain protocol above, whatever they inherit.
"""
import inspect

from . import functional as F


def runs_own(layer, attribute, method):
    """Whether ``layer`` runs the ``method`` ("forward" or "backward") of the class that
    gives it ``attribute`` (a flag about that method, or a method that stands in for
    it, such as ``backward_params``). False for a subclass that overrides the method
    without setting the attribute again, and for a method replaced on the instance (a
    hook); wrappers that name what they wrap in ``__wrapped__`` (functools.wraps) are
    looked through."""
    owner = next((k for k in type(layer).__mro__ if attribute in vars(k)), None)
    if owner is None or method not in vars(owner):
        return False
    bound = inspect.unwrap(getattr(layer, method))
    return (getattr(bound, "__self__", None) is layer
            and getattr(bound, "__func__", None) is vars(owner)[method])


def declares(layer, flag, method):
    """``layer``'s boolean ``flag`` about ``method``, believed only when
    :func:`runs_own` says the method is the one the flag describes."""
    return bool(getattr(layer, flag, False)) and runs_own(layer, flag, method)


def plain_relu(layer):
    """A ReLU whose forward accepts ``rectified`` (exactly minicnn's, not overridden or
    hooked: a subclass may compute something else)."""
    from .layers import ReLU
    return type(layer) is ReLU and runs_own(layer, "in_place", "forward")


def forward_plan(layers, stop):
    """[kwargs of layer i's forward] for layers[0..stop] (a list of Layer)."""
    if F.in_reference_mode():
        return [{} for _ in layers[:stop + 1]]
    plans, temporary, fused = [], False, False     # the caller's x is never written
    for i, layer in enumerate(layers[:stop + 1]):
        options = {"rectified": True} if fused else {}
        fused = (declares(layer, "fuses_relu", "forward") and i < stop
                 and plain_relu(layers[i + 1]))
        if fused:
            options["relu"] = True
        if temporary and declares(layer, "in_place", "forward"):
            options["overwrite"] = True
        temporary = declares(layer, "fresh_output", "forward")
        plans.append(options)
    return plans


def backward_plan(layers):
    """[kwargs of each layer's backward] for ``layers`` in the order the signal meets
    them (top first)."""
    if F.in_reference_mode():
        return [{} for _ in layers]
    plans, temporary = [], False                   # the caller's signal is never written
    for layer in layers:
        plans.append({"overwrite": True}
                     if temporary and declares(layer, "in_place", "backward") else {})
        temporary = declares(layer, "fresh_signal", "backward")
    return plans
