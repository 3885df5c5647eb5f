"""The result of :func:`ufm.solve`: parameters, diagnostics, a status and a trajectory."""

from __future__ import annotations

import enum
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Status(enum.IntEnum):
    """How a solve ended. ``Solution.status`` holds these codes as an int32 array (one per
    instance under ``jax.vmap``); :attr:`Status.message` says what to do next. A member prints
    as its name (``str(Status.successful) == "successful"``) and compares equal to its code.
    """

    successful = 0
    max_steps_reached = 1
    nonfinite = 2
    stalled = 3
    saddle = 4
    invalid_input = 5
    no_progress = 6

    def __str__(self) -> str:
        return self.name

    def __format__(self, spec: str) -> str:
        return format(self.name, spec)

    @property
    def message(self) -> str:
        """What the status means and what to do next."""
        return _MESSAGES[self]

    @property
    def summary(self) -> str:
        """The message's first clause (what happened, without the advice)."""
        return _SUMMARIES[self]


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
    Status.no_progress: (
        "no progress on a nonsmooth objective: over the last window of steps (50, "
        "ufm/_iterate.py) the objective fell by at most atol + rtol |f| and the smallest "
        "gradient norm seen did not halve, while the stationarity test failed (typical at a "
        "kink of a ReLU, where the gradient need not vanish at a minimiser); the point is not "
        "certified stationary and may lie above the lowest loss: use restarts "
        "(Restarts.best_loss_rate) and compare with the closed form where one exists"
    ),
}

_SUMMARIES = {s: m.split(":")[0] for s, m in _MESSAGES.items()}
_SUMMARIES[Status.saddle] = "stopped at a stationary point that is not a global minimum"
_SUMMARIES[Status.invalid_input] = "the problem holds invalid values"
_SUMMARIES[Status.no_progress] = "no progress on a nonsmooth objective"


def _concrete(x) -> bool:
    return not any(isinstance(v, jax.core.Tracer) for v in jax.tree_util.tree_leaves(x))


def _fields_repr(t) -> str:
    """The plain named-tuple repr (for traced values)."""
    fields = ", ".join(f"{k}={v!r}" for k, v in zip(t._fields, t, strict=True))
    return f"{type(t).__name__}({fields})"


def status_counts(status) -> dict[str, int]:
    """``{name: count}`` of an array of status codes, in code order, nonzero counts only."""
    codes = np.ravel(np.asarray(status))
    return {s.name: int(np.sum(codes == s)) for s in Status if np.any(codes == s)}


def status_name(status) -> str:
    """A status array as text: the name alone for one instance (``successful``), a count per
    status for a batch (``{successful: 6, max_steps_reached: 2}``)."""
    if np.ndim(status) == 0:
        return Status(int(status)).name
    return "{" + ", ".join(f"{k}: {v}" for k, v in status_counts(status).items()) + "}"


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
    ``ufm/_iterate.py``).

    Two rates say different things: :attr:`stationary_rate` counts the restarts that ended
    ``successful`` (a stationary point, which on a nonconvex landscape may be a spurious local
    minimum), :meth:`best_loss_rate` those whose loss is within a tolerance of the best
    restart's (the fraction of inits that find the lowest loss seen). :meth:`rate_within`
    compares with any reference loss, e.g. a closed form's.
    """

    losses: jax.Array
    statuses: jax.Array
    num_steps: jax.Array
    best: jax.Array

    @property
    def stationary_rate(self) -> jax.Array:
        """Fraction of restarts that ended ``successful`` (stationary to the documented
        accuracy), whatever their loss."""
        return (self.statuses == Status.successful).mean(axis=-1)

    @property
    def success_rate(self) -> jax.Array:
        """Deprecated alias of :attr:`stationary_rate`."""
        warnings.warn(
            "Restarts.success_rate is deprecated: it counts stationary restarts, use "
            "Restarts.stationary_rate (or Restarts.best_loss_rate for restarts that reach the "
            "best loss)",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.stationary_rate

    def rate_within(self, loss, rtol: float = 1e-6) -> jax.Array:
        """Fraction of restarts whose loss ``f_i`` satisfies ``f_i <= loss + rtol |loss|``
        (a NaN loss never counts). ``loss`` is a scalar, or one per instance under a batch."""
        ref = jnp.asarray(loss)[..., None]
        return (self.losses <= ref + rtol * jnp.abs(ref)).mean(axis=-1)

    def best_loss_rate(self, rtol: float = 1e-6) -> jax.Array:
        """Fraction of restarts within ``rtol`` of the best restart's loss:
        ``f_i <= f_best + rtol |f_best|`` (the best itself counts, so the rate is >= 1/R
        where the best loss is finite)."""
        best = jnp.take_along_axis(self.losses, jnp.asarray(self.best)[..., None], axis=-1)
        return self.rate_within(best[..., 0], rtol)

    def __repr__(self) -> str:
        if not _concrete(self):
            return _fields_repr(self)
        steps = np.asarray(self.num_steps)
        return (
            f"Restarts(statuses={status_name(self.statuses)}, "
            f"losses={np.array2string(np.asarray(self.losses), precision=6)}, "
            f"num_steps={np.array2string(steps)}, best={np.asarray(self.best)})"
        )


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

    @property
    def status_name(self) -> str:
        """The status as text: its name for one instance (``successful``), a count per status
        for a batched solution (``{successful: 6, max_steps_reached: 2}``)."""
        return status_name(self.status)

    def status_counts(self) -> dict[str, int]:
        """``{name: count}`` over the instances of a batched solution (one for a single one)."""
        return status_counts(self.status)

    def __repr__(self) -> str:
        # Traced (inside jit or vmap) the fields are tracers: the plain tuple repr.
        if not _concrete((self.status, self.loss, self.num_steps)):
            return _fields_repr(self)
        loss = np.asarray(self.loss)
        steps = np.asarray(self.num_steps)
        if loss.ndim == 0:
            head = (
                f"status={self.status_name}, loss={float(loss):.10g}, num_steps={int(steps)}, "
                f"message={Status(int(self.status)).summary!r}"
            )
        else:
            head = (
                (
                    f"batch={loss.shape}, status={self.status_name}, "
                    f"loss=[{np.nanmin(loss):.10g} .. {np.nanmax(loss):.10g}], "
                    f"num_steps=[{steps.min()} .. {steps.max()}]"
                )
                if loss.size
                else f"batch={loss.shape}"
            )
        extra = "" if self.restarts is None else f", restarts={self.restarts!r}"
        return f"Solution({head}{extra})"


def status_messages(status) -> list[str]:
    """Messages for an array of status codes (e.g. from a vmapped solve)."""
    return [f"{Status(int(s)).name}: {Status(int(s)).message}" for s in np.ravel(status)]
