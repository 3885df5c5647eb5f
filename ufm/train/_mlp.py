r"""A multilayer perceptron in pure JAX: a static structure and a parameter pytree.

``MLP(widths=(p_0, p_1, ..., p_L))`` has ``L`` linear layers; layer ``l`` (from 0) maps its
input ``x_l`` of width ``p_l`` to ``z_l = W_l x_l + b_l`` with ``W_l`` of shape
``(p_{l+1}, p_l)`` (the layout of :func:`ufm.metrics.deep_nc` / :func:`ufm.metrics.deep_nrc`:
``(out_l, p_l)``), and

    x_0 = x,    x_{l+1} = s(z_l) (l < L - 1),    f(x) = z_{L-1}

with the activation ``s`` applied between layers and not after the last one. The *features of
layer* ``l`` are its input ``x_l`` (samples first: ``(N, p_l)``), so ``features[0]`` is the data
itself and ``features[L-1]`` the penultimate features that the head ``W_{L-1}`` reads (the
``H`` of the unconstrained feature model).

Initialisation (:meth:`MLP.init`): ``W_l`` with i.i.d. ``N(0, g / p_l)`` entries, ``g = 2`` for
ReLU (He et al., ICCV 2015) and ``g = 1`` otherwise (LeCun), biases 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .._validate import check_int, check_key, float_dtype

ACTIVATIONS = {
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "gelu": jax.nn.gelu,
    "identity": lambda z: z,
}


class MLPParams(NamedTuple):
    """Parameters of an :class:`MLP`: ``weights[l]`` of shape ``(p_{l+1}, p_l)`` and
    ``biases[l]`` of shape ``(p_{l+1},)``, or ``biases = None`` for a bias-free network."""

    weights: tuple[jax.Array, ...]
    biases: tuple[jax.Array, ...] | None


class MLP(NamedTuple):
    """The structure of a multilayer perceptron (hashable: a static argument under ``jit``).

    Attributes:
        widths: ``(p_0, ..., p_L)``: input width, hidden widths, output width (``L >= 1``).
        activation: ``"relu"``, ``"tanh"``, ``"gelu"`` or ``"identity"`` (a deep linear net).
        bias: whether every linear layer has a bias.
    """

    widths: tuple[int, ...]
    activation: str = "relu"
    bias: bool = True

    @classmethod
    def create(cls, widths: Sequence[int], activation: str = "relu", bias: bool = True) -> MLP:
        """A checked :class:`MLP` (``ValueError``/``TypeError`` naming the bad argument)."""
        if isinstance(widths, str) or not isinstance(widths, Sequence):
            raise TypeError(f"widths must be a sequence of ints, got {widths!r}")
        ws = tuple(check_int(w, f"widths[{i}]", minimum=1) for i, w in enumerate(widths))
        if len(ws) < 2:
            raise ValueError(
                f"widths must hold at least (input, output) widths, got {len(ws)} entries"
            )
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if not isinstance(bias, bool):
            raise TypeError(f"bias must be True or False, got {bias!r}")
        return cls(ws, activation, bias)

    @property
    def num_layers(self) -> int:
        """``L``, the number of linear layers."""
        return len(self.widths) - 1

    def init(self, key, dtype=None) -> MLPParams:
        """Random parameters: ``W_l ~ N(0, g/p_l)`` (``g = 2`` for ReLU, else 1), ``b_l = 0``."""
        key = check_key(key)
        dt = float_dtype(dtype)
        gain = 2.0 if self.activation == "relu" else 1.0
        keys = jax.random.split(key, self.num_layers)
        weights = tuple(
            jax.random.normal(k, (q, p), dt) * (gain / p) ** 0.5
            for k, p, q in zip(keys, self.widths[:-1], self.widths[1:], strict=True)
        )
        biases = tuple(jnp.zeros((q,), dt) for q in self.widths[1:]) if self.bias else None
        return MLPParams(weights, biases)

    def layer_inputs(self, params: MLPParams, X: jax.Array) -> tuple[list[jax.Array], jax.Array]:
        """``([x_0, ..., x_{L-1}], f(X))``: every linear layer's input ``(..., p_l)`` and the
        output ``(..., p_L)`` for inputs ``X (..., p_0)`` (one sample or samples first)."""
        act = ACTIVATIONS[self.activation]
        feats, h = [], X
        L = len(params.weights)
        for i, W in enumerate(params.weights):
            feats.append(h)
            z = h @ W.T
            if params.biases is not None:
                z = z + params.biases[i]
            h = act(z) if i < L - 1 else z
        return feats, h

    def apply(self, params: MLPParams, X: jax.Array) -> jax.Array:
        """``f(X)`` of shape ``(..., p_L)`` for ``X`` of shape ``(..., p_0)``."""
        return self.layer_inputs(params, X)[1]
