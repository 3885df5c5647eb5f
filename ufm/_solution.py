"""The result of :func:`ufm.solve`: parameters, diagnostics, a status and a trajectory."""

from __future__ import annotations

import enum
from typing import NamedTuple

import jax
import numpy as np


class Status(enum.IntEnum):
    """How a solve ended. ``Solution.status`` holds these codes as an int32 array (one per
    instance under ``jax.vmap``); :func:`Status.message` says what to do next."""

    successful = 0
    max_steps_reached = 1
    nonfinite = 2
    stalled = 3
    saddle = 4
    invalid_input = 5

    @property
    def message(self) -> str:
        return _MESSAGES[self]


_MESSAGES = {
    Status.successful: (
        "converged: the stationarity test ||g|| max(||y||, ||y_0||) <= atol + rtol min(|f|, |f_0|) "
        "holds"
    ),
    Status.max_steps_reached: (
        "stopped at max_steps before the stationarity test held: increase max_steps, use a "
        "faster solver (the exact solver or L-BFGS), or loosen rtol/atol"
    ),
    Status.nonfinite: (
        "the objective or its gradient became NaN or inf (diverged): lower the learning rate, "
        "check the lambdas (the exact solver needs lambda_H > 0 and lambda_W > 0) and the data"
    ),
    Status.saddle: (
        "stopped at a stationary point that is not a global minimum (the global-optimality "
        "certificate ||grad_Z data||_op <= sqrt(beta_W beta_H) fails, e.g. W = 0 below the "
        "collapse threshold, or with d < n its Eckart-Young form, e.g. W in a lesser "
        "eigen-direction of the targets): restart from a random init"
    ),
    Status.invalid_input: (
        "the problem holds invalid values that could not be checked while tracing (a negative "
        "lambda, labels outside [0, K) or an empty class): fix the inputs"
    ),
    Status.stalled: (
        "no further progress was possible before the stationarity test held: a line search "
        "returned a zero update (the accuracy is limited by floating-point precision: use "
        "float64, or rtol is too tight), or an optax optimiser reached a fixed point of its "
        "step, which would change neither the variables nor its state (e.g. a learning rate "
        "of 0)"
    ),
}


class Trajectory(NamedTuple):
    """Values recorded inside the jitted loop every ``record_every`` steps (and at step 0).

    ``metrics`` maps names to arrays: NRC1-NRC3 (NRC3 with ``gamma = lambda_H lambda_W``, the
    UFM convention of Andriopoulos et al., Sec. 4.5) for regression, NC1-NC4 for
    classification. Entries past the last recorded step hold ``step = -1`` and NaN. Shapes:
    ``(R,)`` each, ``R = max_steps // record_every + 2`` (a leading batch axis under vmap).
    """

    step: jax.Array
    loss: jax.Array
    metrics: dict[str, jax.Array]

    def valid(self) -> dict[str, np.ndarray]:
        """The recorded rows only, as numpy arrays: ``step``, ``loss`` and each metric."""
        mask = np.asarray(self.step) >= 0
        out = {"step": np.asarray(self.step)[mask], "loss": np.asarray(self.loss)[mask]}
        out.update({k: np.asarray(v)[mask] for k, v in self.metrics.items()})
        return out


class Restarts(NamedTuple):
    """The spread of a solve with ``restarts=R``: every restart's final loss, status and number
    of steps (shape ``(R,)``, with a leading batch axis under vmap). ``best`` is the index
    returned. The restarts run together, so the vmapped loop runs ``max(num_steps)`` steps
    (for optax solvers, plus at most 64 for each fixed-point test that a restart waits for:
    ``ufm/_iterate.py``)."""

    losses: jax.Array
    statuses: jax.Array
    num_steps: jax.Array
    best: jax.Array

    @property
    def success_rate(self) -> jax.Array:
        """Fraction of restarts that ended ``successful``."""
        return (self.statuses == Status.successful).mean(axis=-1)


class Solution(NamedTuple):
    """Output of :func:`ufm.solve`.

    What ``successful`` promises: the solver's stationarity test held (a stationary point to
    the documented tolerance) and, for the one-layer UFMs, the global-optimality certificate of
    ``ufm/_certificate.py`` passed where it applies (a stationary point that fails it ends
    ``saddle``). For a problem without such a certificate (:class:`ufm.DeepUFM`, whose
    landscape has spurious local minima), ``successful`` means a stationary point that passed
    the stopping test, never more: use ``restarts`` and compare with :mod:`theory`.

    Attributes:
        params: the problem's variables (``ufm.Params(H, W, b)`` for the one-layer UFMs,
            ``ufm.DeepParams(H, Ws, b)`` for deep ones), samples first.
        loss: the objective at ``params``, in the problem's normalisation.
        grad_norm: Euclidean norm of the gradient in the solver's coordinates at the last
            iterate (preconditioned variables for gradient solvers, the reduced ``n x r``
            variable for the exact solver).
        num_steps: solver steps taken.
        status: a :class:`Status` code (int32 array).
        trajectory: a :class:`Trajectory` when ``record_every`` was given, else ``None``.
        restarts: :class:`Restarts` when ``restarts`` was given, else ``None``.
    """

    params: object
    loss: jax.Array
    grad_norm: jax.Array
    num_steps: jax.Array
    status: jax.Array
    trajectory: Trajectory | None = None
    restarts: Restarts | None = None

    @property
    def succeeded(self) -> jax.Array:
        """``status == successful`` (elementwise under vmap)."""
        return self.status == Status.successful

    @property
    def message(self) -> str:
        """The status message (single instance; under vmap use :func:`status_messages`)."""
        return Status(int(self.status)).message


def status_messages(status) -> list[str]:
    """Messages for an array of status codes (e.g. from a vmapped solve)."""
    return [f"{Status(int(s)).name}: {Status(int(s)).message}" for s in np.ravel(status)]
