r"""Train an MLP and watch collapse emerge: one jitted loop, layer-wise metrics every k epochs.

:func:`fit` minimises, over the parameters ``theta = (W_l, b_l)_l`` of an :class:`~ufm.train.MLP`
``f``, the training objective

    J(theta) = D(theta) + sum_l (lambda_l / 2) ||W_l||_F^2

with the data term

* ``loss="mse"``: ``D = (1/(2N)) sum_i ||f(x_i) - y_i||^2`` (regression targets ``y_i``, or the
  one-hot vector ``e_{c_i}`` of a class label: the MSE loss of Han, Papyan, Donoho, ICLR 2022);
* ``loss="ce"``: ``D = (1/N) sum_i -log softmax(f(x_i))_{c_i}`` (classification only).

**Weight decay is the explicit L2 penalty above, inside the loss** (coupled, not the decoupled
``optax.add_decayed_weights``): it acts on the weights only, never on the biases, and the same
``J`` is what the records report. With plain SGD at step ``eta`` the penalty's gradient step
``W <- W - eta lambda W`` is PyTorch's ``weight_decay = lambda``; with momentum or adaptive
optimisers the penalty goes through the optimiser's preconditioning like any other gradient.
``weight_decay`` is a scalar or one value per layer ``(L,)`` (the ``lambda_{W_l}`` of a deep UFM).

The loop: an outer ``lax.scan`` over chunks of ``record_every`` epochs, each an inner
``lax.scan`` over epochs; an epoch is one full-batch step (``batch_size=None``) or a scan over
``floor(N / B)`` mini-batches of size ``B`` drawn without replacement from a permutation
reshuffled every epoch (``fold_in(key, epoch)``; the ``N mod B`` samples left over by the
permutation are skipped in that epoch). The metrics run once per chunk, so they cost nothing on
the other epochs (the nesting of :mod:`ufm._iterate`), and no Python runs per step. Recorded
after ``0, k, 2k, ...`` epochs and after the last one, on the *record set* (the whole training
set, or a fixed random subset of ``record_samples`` samples when ``N`` is large):

* the features of every linear layer, ``features[l] = x_l (N_r, p_l)``, the input of ``W_l``
  (``features[0]`` is the data, ``features[L-1]`` the penultimate features), fed with the
  weights (and biases) to :func:`ufm.metrics.deep_nc` (classification: NC1-NC4 per layer,
  Papyan, Han, Donoho, PNAS 2020; Súkeník, Mondelli, Lampert, NeurIPS 2023) or
  :func:`ufm.metrics.deep_nrc` (regression: deep NRC1-4 and stable ranks per layer, Rangamani &
  Unal, CPAL 2026);
* ``data_loss`` ``D`` and ``objective`` ``J`` on the record set, and for classification the
  training ``accuracy``.

Swept values are traced: the data, ``weight_decay``, ``learning_rate``, ``key`` and initial
``params`` may change between calls without recompiling; the structure (model, loss, optimiser
object, epochs, batch size, record interval, sizes) is static.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .. import metrics as _metrics
from .._validate import (
    _array_view,
    _kind,
    check_finite,
    check_int,
    check_key,
    check_label_values,
    float_array,
    is_concrete,
    labels_array,
)
from ._mlp import MLP, MLPParams

LOSSES = ("mse", "ce")


class FitResult(NamedTuple):
    """Output of :func:`fit`.

    Attributes:
        params: the final :class:`~ufm.train.MLPParams`.
        loss: ``(epochs,)`` training objective ``J`` during each epoch (full batch: at the
            parameters before that epoch's step; mini-batches: the mean over the epoch's
            batches, each before its step).
        record_epochs: ``(R,)`` the number of epochs done at each record: ``0, k, 2k, ...`` and
            ``epochs`` (``R = ceil(epochs / k) + 1``).
        records: name -> array with a leading ``(R,)`` axis: the per-layer metrics of
            :func:`ufm.metrics.deep_nc` or :func:`ufm.metrics.deep_nrc` as ``(R, L)``, their
            scalars (``first_collapsed``) and ``data_loss``, ``objective``, ``accuracy`` as
            ``(R,)``.
    """

    params: MLPParams
    loss: jax.Array
    record_epochs: jax.Array
    records: dict[str, jax.Array]

    def final(self) -> dict[str, np.ndarray]:
        """The last record of every quantity, as numpy arrays (per layer where it has one)."""
        return {k: np.asarray(v[-1]) for k, v in self.records.items()}


def _data_loss(loss: str, Z, T, num_classes: int | None):
    if loss == "ce":
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(Z, T))
    if num_classes is not None:
        T = jax.nn.one_hot(T, num_classes, dtype=Z.dtype)
    return 0.5 * jnp.sum((Z - T) ** 2) / Z.shape[0]


def _penalty(weights, wd):
    return sum(0.5 * wd[i] * jnp.sum(W**2) for i, W in enumerate(weights))


_STATIC = ("model", "loss", "optimizer", "epochs", "batch_size", "record_every", "num_classes")


@functools.partial(jax.jit, static_argnames=_STATIC)
def _fit(params, X, T, Xr, Tr, wd, lr, key, *, model, loss, optimizer, epochs, batch_size,
         record_every, num_classes):  # fmt: skip
    opt = optax.sgd(lr, momentum=0.9) if optimizer is None else optimizer
    N = X.shape[0]

    def objective(p, Xb, Tb):
        return _data_loss(loss, model.apply(p, Xb), Tb, num_classes) + _penalty(p.weights, wd)

    value_and_grad = jax.value_and_grad(objective)

    def step(carry, batch):
        p, state = carry
        f, g = value_and_grad(p, *batch)
        updates, state = opt.update(g, state, p)
        return (optax.apply_updates(p, updates), state), f

    if batch_size is None:

        def epoch(carry, e):
            return step(carry, (X, T))
    else:
        nb = N // batch_size

        def epoch(carry, e):
            perm = jax.random.permutation(jax.random.fold_in(key, e), N)
            idx = perm[: nb * batch_size].reshape(nb, batch_size)
            carry, fs = jax.lax.scan(lambda c, i: step(c, (X[i], T[i])), carry, idx)
            return carry, jnp.mean(fs)

    def record(p):
        feats, Z = model.layer_inputs(p, Xr)
        data = _data_loss(loss, Z, Tr, num_classes)
        out = {"data_loss": data, "objective": data + _penalty(p.weights, wd)}
        if num_classes is None:
            out.update(_metrics.deep_nrc(feats, p.weights, Tr))
        else:
            out["accuracy"] = jnp.mean(jnp.argmax(Z, axis=-1) == Tr).astype(Z.dtype)
            out.update(_metrics.deep_nc(feats, Tr, num_classes, p.weights, p.biases))
        return out

    # One scan over R = ceil(epochs / k) + 1 chunks: record, then run epochs [i k, min((i+1) k,
    # epochs)) (none in the last chunk), so the metrics are traced once and run R times.
    R = -(-epochs // record_every) + 1

    def chunk(carry, i):
        rec = record(carry[0])

        def body(e, c):
            (p, state), f = epoch((c[0], c[1]), e)
            return p, state, c[2].at[e].set(f)

        lo = i * record_every
        return jax.lax.fori_loop(lo, jnp.minimum(lo + record_every, epochs), body, carry), rec

    losses = jnp.full((epochs,), jnp.nan, X.dtype)
    carry, records = jax.lax.scan(chunk, (params, opt.init(params), losses), jnp.arange(R))
    return carry[0], carry[2], records


def _model(model, d: int, out: int) -> MLP:
    """The :class:`MLP` (checked against the data) from an MLP or a sequence of hidden widths."""
    if isinstance(model, MLP):
        m = MLP.create(model.widths, model.activation, model.bias)
        if m.widths[0] != d or m.widths[-1] != out:
            raise ValueError(
                f"model must have widths (input, ..., output) = ({d}, ..., {out}) to match X "
                f"and y, got widths {m.widths}"
            )
        return m
    if isinstance(model, str) or not isinstance(model, Sequence):
        raise TypeError(
            f"model must be a ufm.train.MLP or a sequence of hidden widths, got {model!r}"
        )
    return MLP.create((d, *model, out))


def _targets(y, num_classes, loss: str, N: int, dtype):
    """``(T, K)``: int labels and ``K`` for classification, float ``(N, n)`` targets and None."""
    if num_classes is not None:
        K = check_int(num_classes, "num_classes", minimum=2)
        return labels_array(y, K, "y", num_samples=N), K
    arr = _array_view(y, "y")
    if _kind(arr.dtype) == "int" and arr.ndim == 1:
        raise ValueError(
            "y holds integer labels: pass num_classes for classification (or float targets "
            "of shape (N, n) for regression)"
        )
    if loss == "ce":
        raise ValueError("loss='ce' needs class labels: pass num_classes (and integer labels y)")
    Y = float_array(y, "y", dtype)
    if Y.ndim == 1:
        Y = Y[:, None]
    if Y.ndim != 2 or Y.shape[0] != N:
        raise ValueError(
            f"y must have shape (N, n) = ({N}, n) to match X (or (N,) for one target), got "
            f"{tuple(arr.shape)}"
        )
    check_finite(Y, "y")
    return Y, None


def _weight_decay(weight_decay, L: int, dtype) -> jax.Array:
    wd = float_array(weight_decay, "weight_decay", dtype, allow_bool=False)
    if wd.shape not in ((), (L,)):
        raise ValueError(
            f"weight_decay must be a scalar or one value per layer, shape ({L},), got {wd.shape}"
        )
    if is_concrete(wd):
        v = np.asarray(wd)
        if not np.all(np.isfinite(v) & (v >= 0)):
            raise ValueError(f"weight_decay must be finite and >= 0, got {v}")
    return jnp.broadcast_to(wd, (L,))


def _check_params(params, model: MLP, dtype) -> MLPParams:
    want = jax.eval_shape(lambda: model.init(jax.random.key(0), dtype))
    shapes = jax.tree_util.tree_map(lambda s: s.shape, want)
    got = None
    if isinstance(params, MLPParams):
        got = jax.tree_util.tree_map(jnp.shape, params)
    if got != shapes:
        raise ValueError(f"params must be MLPParams with shapes {shapes} (model.init's), got {got}")
    return jax.tree_util.tree_map(lambda a: float_array(a, "params", dtype), params)


def fit(
    model,
    X,
    y,
    *,
    key,
    num_classes: int | None = None,
    loss: str = "mse",
    weight_decay=0.0,
    learning_rate=None,
    optimizer: optax.GradientTransformation | None = None,
    epochs: int = 100,
    batch_size: int | None = None,
    record_every: int | None = None,
    record_samples: int | None = None,
    params: MLPParams | None = None,
) -> FitResult:
    """Train an MLP on ``(X, y)`` and record layer-wise collapse metrics (see module docstring).

    Args:
        model: a :class:`~ufm.train.MLP` with widths ``(d, ..., out)``, or a sequence of hidden
            widths (ReLU, biases; input and output widths from the data).
        X: inputs ``(N, d)``, finite.
        y: integer labels ``(N,)`` in ``[0, num_classes)`` (classification, output width
            ``K``) or float targets ``(N, n)`` / ``(N,)`` (regression, output width ``n``).
        key: PRNG key (initialisation, shuffling, the record subset).
        num_classes: ``K``; given for classification, ``None`` for regression.
        loss: ``"mse"`` or ``"ce"`` (classification only).
        weight_decay: ``lambda >= 0``, scalar or ``(L,)``: the penalty ``sum_l lambda_l/2
            ||W_l||_F^2`` inside the loss (weights only).
        learning_rate: step of the default optimiser ``optax.sgd(learning_rate, momentum=0.9)``
            (default 0.02; traced; standardise the inputs); ``None`` when passing ``optimizer``.
        optimizer: any optax transformation (static: pass the same object to reuse the
            compilation; sweep its hyperparameters with ``optax.inject_hyperparams``).
        epochs: number of passes over the data.
        batch_size: ``None`` (full batch) or ``B`` in ``[1, N]``.
        record_every: ``k``: record after every ``k`` epochs (default: only at the start and
            the end).
        record_samples: compute the records on a fixed random subset of this many samples
            (default: all ``N``; every class must be present in the subset).
        params: initial parameters (default ``model.init`` with a key split from ``key``).

    Returns:
        :class:`FitResult`.

    Batching: ``jax.vmap(lambda wd: fit(..., weight_decay=wd))(wds)`` (or over keys) runs one
    compiled loop for all instances (tested for classification). On CPU with jax 0.10.2 a
    vmapped *regression* fit was seen to hang inside XLA's CPU runtime (the batched deep NRC
    eigen-decompositions next to the training step); ``XLA_FLAGS=--xla_cpu_use_thunk_runtime=false``
    avoids it, or loop in Python (the second call reuses the compilation).
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    if jnp.ndim(_array_view(X, "X")) != 2:
        raise ValueError(f"X must have shape (N, d), got {jnp.shape(_array_view(X, 'X'))}")
    X = float_array(X, "X")
    check_finite(X, "X")
    N, d = X.shape
    dt = X.dtype
    T, K = _targets(y, num_classes, loss, N, dt)
    model = _model(model, d, K if K is not None else T.shape[1])
    L = model.num_layers
    key = check_key(key)
    epochs = check_int(epochs, "epochs", minimum=1)
    if batch_size is not None:
        batch_size = check_int(batch_size, "batch_size", minimum=1)
        if batch_size > N:
            raise ValueError(f"batch_size must be at most N = {N}, got {batch_size}")
    k = epochs if record_every is None else check_int(record_every, "record_every", minimum=1)
    wd = _weight_decay(weight_decay, L, dt)
    if optimizer is not None and learning_rate is not None:
        raise ValueError("learning_rate is for the default optimiser: pass one or the other")
    lr = float_array(0.02 if learning_rate is None else learning_rate, "learning_rate", dt)
    if lr.ndim != 0 or (is_concrete(lr) and not (np.isfinite(float(lr)) and float(lr) > 0)):
        raise ValueError(f"learning_rate must be a finite scalar > 0, got {learning_rate!r}")
    if params is not None:
        params = _check_params(params, model, dt)
    k_init, k_shuffle, k_record = jax.random.split(key, 3)
    if params is None:
        params = model.init(k_init, dt)
    Xr, Tr = X, T
    if record_samples is not None:
        m = check_int(record_samples, "record_samples", minimum=2)
        if m < N:
            idx = jax.random.permutation(k_record, N)[:m]
            Xr, Tr = X[idx], T[idx]
            if K is not None:
                check_label_values(Tr, K, f"the record subset (record_samples = {m})")
    final, losses, records = _fit(
        params, X, T, Xr, Tr, wd, lr, k_shuffle, model=model, loss=loss, optimizer=optimizer,
        epochs=epochs, batch_size=batch_size, record_every=k, num_classes=K,
    )  # fmt: skip
    record_epochs = jnp.asarray(np.minimum(np.arange(-(-epochs // k) + 1) * k, epochs), jnp.int32)
    return FitResult(final, losses, record_epochs, records)
