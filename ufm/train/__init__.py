"""A small trainer to watch neural collapse emerge in a real network (pure JAX + optax).

* :class:`MLP` (structure: widths, activation, bias) and :class:`MLPParams` (the parameter
  pytree: ``weights[l]`` of shape ``(out_l, p_l)``, ``biases[l]``), with ``MLP.init``,
  ``MLP.apply`` and ``MLP.layer_inputs`` (every linear layer's input: the features the
  layer-wise metrics read);
* :func:`fit`: full-batch or mini-batch training with weight decay (an explicit L2 penalty in the
  loss), recording :func:`ufm.metrics.deep_nc` (classification) or :func:`ufm.metrics.deep_nrc`
  (regression) every ``k`` epochs inside one jitted loop; returns a :class:`FitResult`.

Example::

    import jax, ufm.train
    res = ufm.train.fit([64, 64], X, labels, num_classes=10, key=jax.random.key(0),
                        weight_decay=5e-4, epochs=500, record_every=50)
    res.records["nc1"]        # (R, L): NC1 of every layer's input at each record

The model is in ``ufm/train/_mlp.py``, the training loop in ``ufm/train/_fit.py``; the trainer
builds on :mod:`ufm.metrics` and the shared checks only (never on :mod:`theory` or the
problems).
"""

from ._fit import FitResult as FitResult
from ._fit import fit as fit
from ._mlp import MLP as MLP
from ._mlp import MLPParams as MLPParams

__all__ = ["MLP", "MLPParams", "FitResult", "fit"]
