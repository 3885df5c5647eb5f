"""PyTorch re-implementation of the papers' UFM training protocol (regression UFM).

For benchmarking only. This module is not part of the ``ufm`` package and is
not imported by it. It is the baseline that ``ufm``'s JAX solvers get compared
against. It needs ``torch`` (the ``bench`` extra) and ``numpy``.

Objective
---------
Samples-first shapes: targets ``Y`` (M, n), features ``H`` (M, d), weights
``W`` (n, d), bias ``b`` (n,). The loss follows eq. (1) of Andriopoulos et al.,
"The Prevalence of Neural Collapse in Neural Multivariate Regression"
(NeurIPS 2024)::

    L(H, W, b) = 1/(2M) ||H W^T + 1 b^T - Y||_F^2
                 + lambda_H/(2M) ||H||_F^2 + lambda_W/2 ||W||_F^2

The fit term and the H penalty are averaged over the M samples. They are not
averaged over the n target dimensions. With this normalisation the global
minimiser satisfies ``W W^T = sqrt(lambda_H/lambda_W) (Sigma^{1/2} - sqrt(c) I)_+``
with ``c = lambda_H lambda_W`` and ``Sigma = (Y - ybar)^T (Y - ybar) / M``
(see :func:`closed_form_WWT`), so ``lambda_H`` and ``lambda_W`` mean the same
here as in ``ufm``.

Source and deviations
---------------------
The authors' code (github.com/Konokiii/NC_regression) trains with
``torch.optim.SGD(momentum=0.9)``. It computes the fit term as
``0.5 * F.mse_loss(...)``, and ``F.mse_loss`` also averages over the n target
dimensions. That divides the fit term by an extra factor of n and changes what
the lambdas mean. This module uses the paper's eq. (1) normalisation instead.

Protocol
--------
* Full-batch gradient descent on ``(H, W, b)`` as written, with no
  preconditioning and no elimination of H or b. Gradients come from autograd
  through the loss above, with each squared norm written as
  ``vector_norm(x)**2`` (see ``_sq_norm``). The optimiser is
  ``torch.optim.SGD(params, lr=lr, momentum=0.9)`` with no weight decay,
  because the penalties are already in the loss. It uses PyTorch's default
  (foreach) implementation.
* Initialisation: ``H, W ~ N(0, 0.1^2)`` entrywise and ``b = 0``. The values
  are drawn in float64 from a ``torch.Generator`` seeded with ``seed`` and then
  cast, so float32 and float64 runs start from the same point.
* dtype is float64 by default, with a float32 option. ``torch.set_num_threads``
  is left at its default.

Learning rate
-------------
The papers use one fixed learning rate. To be fair to the baseline,
:func:`stable_learning_rate` picks it from a log grid, by default
10, 5, 3, 2, 1, 0.5, ..., 0.01. That is finer than a 1-3-10 grid: at
lambda = 1e-3, going from lr = 1 to lr = 2 halves the time to converge. A
candidate is accepted only if both of the following hold:

1. It is linearly stable at the closed-form global minimiser: ``lr * S* <
   2 (1 + beta) = 3.8``, the heavy-ball stability limit for beta = 0.9. Here
   ``S*`` is the largest Hessian eigenvalue at the minimiser (see
   :func:`sharpness_at_minimiser`).
2. A short probe of ``probe_steps`` full-batch steps, from the same
   initialisation as the real run, neither diverges (non-finite loss) nor ends
   above its initial loss.

Among the accepted candidates it returns the one with the lowest probe loss,
taking the larger on ties. Candidates are tried from largest to smallest, and
the search stops once an accepted candidate does worse than the best so far.

The probe alone is not enough. With the 1-3-10 grid, n = 3, d = 256,
M = 1e3 and lambda = 1e-3, the probe picks lr = 3 because it has the lowest
loss after 200 steps. But ``S*`` is about 1.8 there, so lr = 3 is unstable at
the minimiser. Once H has grown, the run oscillates at the edge of stability,
and the relative W W^T error stalls at 0.4-0.8 indefinitely. lr = 2 reaches
4e-3 in 6e4 steps, and lr = 1 reaches 5e-2. Pass
``require_stable_minimiser=False`` for the probe-only rule.

Curvature: the H block of the Hessian is block diagonal over samples, with
blocks ``(W^T W + lambda_H I)/M``, so its curvature is O(1/M). The W block has
curvature ``H^T H / M + lambda_W I``. At a critical point ``lambda_H H^T H / M =
lambda_W W^T W``, so this block is O(1). The b block has curvature exactly 1.
The step size is therefore set by the W and b blocks, and it does not depend
on M. Each step then moves H by only O(lr/M), so the number of steps needed
grows linearly with M. That is the intrinsic cost of the unpreconditioned
protocol.

Timing
------
``run_reference`` times each optimiser step (``zero_grad``, forward,
``backward``, ``optimizer.step``) with ``time.perf_counter`` and adds these
intervals up. The budget, the reported times and ``time_to_tol`` all use this
summed training time. Setup is excluded: converting Y, initialising, building
the optimiser and computing the closed-form target. The monitoring done every
``check_every`` steps (a no-grad loss evaluation and the n x n relative error
of W W^T) falls outside the timed intervals, so it is excluded too. On CUDA
the device is synchronised before each clock read. On CPU, torch ops are
synchronous. The leftover overhead is one pair of ``perf_counter`` calls and
one Python comparison per step, well under 1 microsecond. ``time_to_tol`` and
``steps_to_tol`` are resolved to ``check_every`` steps: they are the summed
training time and step count at the first check where the error is ``<= tol``.
``total_wall_s`` additionally reports the full elapsed time, monitoring
included.

Timings mean something only on an otherwise idle machine. Torch's default
intra-op thread count equals the number of cores. On a 2-core machine,
another process using one core slowed the M = 1e3 steps by up to 50x, because
the OpenMP threads were oversubscribed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "closed_form_WWT",
    "run_reference",
    "sharpness_at_minimiser",
    "stable_learning_rate",
]

_MOMENTUM = 0.9
_INIT_STD = 0.1
_DEFAULT_LR_GRID = (10.0, 5.0, 3.0, 2.0, 1.0, 0.5, 0.3, 0.2, 0.1, 0.05, 0.03, 0.02, 0.01)


def _torch_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    table = {"float64": torch.float64, "float32": torch.float32}
    if dtype not in table:
        raise ValueError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
    return table[dtype]


def _sq_norm(x: torch.Tensor) -> torch.Tensor:
    """``||x||_F^2``, written as ``vector_norm(x)**2``.

    It is the same function as ``x.square().sum()``. Its backward pass is a
    single scaled copy of ``x``, whereas ``pow`` takes three passes over
    memory. That makes a full step about 20% faster when H is large (M = 1e4
    to 1e5, d = 256), and the baseline is not slowed by the choice of formula.
    """
    return torch.linalg.vector_norm(x).square()


def _objective(
    H: torch.Tensor,
    W: torch.Tensor,
    b: torch.Tensor,
    Y: torch.Tensor,
    lambda_H: float,
    lambda_W: float,
) -> torch.Tensor:
    """Eq. (1) of Andriopoulos et al. 2024 with its 1/M normalisation."""
    M = Y.shape[0]
    return (
        0.5 / M * _sq_norm(H @ W.T + b - Y)
        + 0.5 * lambda_H / M * _sq_norm(H)
        + 0.5 * lambda_W * _sq_norm(W)
    )


def closed_form_WWT(Y: np.ndarray, lambda_H: float, lambda_W: float) -> np.ndarray:
    """Global-minimiser ``W W^T`` of eq. (1), in numpy float64.

    ``sqrt(lambda_H/lambda_W) (Sigma^{1/2} - sqrt(lambda_H lambda_W) I)_+`` with
    ``Sigma = (Y - ybar)^T (Y - ybar) / M``. Assumes ``feature_dim >= n``.
    """
    Y = np.asarray(Y, dtype=np.float64)
    Yc = Y - Y.mean(axis=0, keepdims=True)
    sigma = Yc.T @ Yc / Y.shape[0]
    evals, evecs = np.linalg.eigh(sigma)
    sqrt_evals = np.sqrt(np.clip(evals, 0.0, None))
    shrunk = np.clip(sqrt_evals - math.sqrt(lambda_H * lambda_W), 0.0, None)
    return math.sqrt(lambda_H / lambda_W) * (evecs * shrunk) @ evecs.T


def sharpness_at_minimiser(Y: np.ndarray, lambda_H: float, lambda_W: float) -> float:
    """Largest Hessian eigenvalue of eq. (1) at its global minimiser (closed form).

    Let ``s1`` be the largest eigenvalue of :func:`closed_form_WWT`. The W block
    contributes ``s1 (lambda_W/lambda_H + 1/M) + lambda_W``: it is the Gauss-Newton
    term, using ``H^T H / M = (lambda_W/lambda_H) W^T W`` at the minimiser. The
    bias, coupled to the mean of H, contributes the top eigenvalue of
    ``[[1, sqrt(s1/M)], [sqrt(s1/M), (s1 + lambda_H)/M]]``. The residual term is
    O(lambda/sqrt(M)) and is dropped. This agrees with dense Hessians and power
    iteration to within about 1e-3 relative for M = 20 to 1000 and
    lambda_H/lambda_W from 1 to 100.
    """
    M = np.asarray(Y).shape[0]
    s1 = float(np.linalg.eigvalsh(closed_form_WWT(Y, lambda_H, lambda_W))[-1])
    w_block = s1 * (lambda_W / lambda_H + 1.0 / M) + lambda_W
    a, c, off2 = 1.0, (s1 + lambda_H) / M, s1 / M
    b_block = 0.5 * (a + c) + math.sqrt(0.25 * (a - c) ** 2 + off2)
    return max(w_block, b_block)


def run_reference(
    Y: np.ndarray,
    lambda_H: float,
    lambda_W: float,
    feature_dim: int,
    *,
    lr: float,
    time_budget_s: float,
    target_WWT: np.ndarray | None = None,
    tol: float | None = None,
    check_every: int = 10,
    seed: int = 0,
    dtype: str = "float64",
    max_steps: int | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Train the regression UFM with the papers' protocol (full-batch SGD, momentum 0.9).

    Runs until the summed training time reaches ``time_budget_s``, until
    ``max_steps`` steps have been taken, or until the loss becomes non-finite,
    whichever comes first. A check happens at step 0, at every multiple of
    ``check_every`` and at the last step. Each check records the loss, the
    relative error ``||W W^T - target||_F / ||target||_F`` (if ``target_WWT`` is
    given) and whether the error has reached ``tol``.

    Returns a dict with keys ``steps``, ``wall_s`` (summed training time),
    ``final_loss``, ``final_rel_err`` (None without a target), ``time_to_tol``
    and ``steps_to_tol`` (None if never reached or no tol/target), ``diverged``,
    ``loss_history`` (a list of ``(step, time_s, loss, rel_err)`` at the checks),
    plus ``lr`` and ``total_wall_s`` (elapsed time including monitoring).
    """
    if check_every < 1:
        raise ValueError("check_every must be >= 1")
    tdtype = _torch_dtype(dtype)
    dev = torch.device(device)
    sync = dev.type == "cuda"

    Y_np = np.asarray(Y)
    if Y_np.ndim != 2:
        raise ValueError(f"Y must have shape (M, n), got {Y_np.shape}")
    M, n = Y_np.shape
    Yt = torch.as_tensor(Y_np, dtype=tdtype, device=dev)

    gen = torch.Generator().manual_seed(seed)
    H0 = _INIT_STD * torch.randn(M, feature_dim, generator=gen, dtype=torch.float64)
    W0 = _INIT_STD * torch.randn(n, feature_dim, generator=gen, dtype=torch.float64)
    H = H0.to(device=dev, dtype=tdtype).requires_grad_(True)
    W = W0.to(device=dev, dtype=tdtype).requires_grad_(True)
    b = torch.zeros(n, dtype=tdtype, device=dev, requires_grad=True)
    del H0, W0
    opt = torch.optim.SGD([H, W, b], lr=lr, momentum=_MOMENTUM)

    target_t = None
    target_norm = None
    if target_WWT is not None:
        target_t = torch.as_tensor(np.asarray(target_WWT), dtype=torch.float64, device=dev)
        target_norm = float(torch.linalg.norm(target_t))
        if target_norm == 0.0:
            raise ValueError("target_WWT has zero norm; relative error undefined")

    def check() -> tuple[float, float | None]:
        with torch.no_grad():
            loss_val = float(_objective(H, W, b, Yt, lambda_H, lambda_W))
            rel = None
            if target_t is not None:
                Wd = W.detach().to(torch.float64)
                rel = float(torch.linalg.norm(Wd @ Wd.T - target_t)) / target_norm
        return loss_val, rel

    history: list[tuple[int, float, float, float | None]] = []
    time_to_tol: float | None = None
    steps_to_tol: int | None = None
    diverged = False
    train_time = 0.0
    step = 0

    def record() -> bool:
        """Run a check, record it and return True if training must stop (divergence)."""
        nonlocal time_to_tol, steps_to_tol, diverged
        loss_val, rel = check()
        history.append((step, train_time, loss_val, rel))
        if not math.isfinite(loss_val) or (rel is not None and not math.isfinite(rel)):
            diverged = True
            return True
        if tol is not None and rel is not None and time_to_tol is None and rel <= tol:
            time_to_tol, steps_to_tol = train_time, step
        return False

    wall_start = time.perf_counter()
    stop = record()
    while not stop and train_time < time_budget_s and (max_steps is None or step < max_steps):
        if sync:
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = _objective(H, W, b, Yt, lambda_H, lambda_W)
        loss.backward()
        opt.step()
        if sync:
            torch.cuda.synchronize(dev)
        train_time += time.perf_counter() - t0
        step += 1
        if step % check_every == 0:
            stop = record()
    if history[-1][0] != step:
        record()
    total_wall_s = time.perf_counter() - wall_start

    _, _, final_loss, final_rel = history[-1]
    return {
        "steps": step,
        "wall_s": train_time,
        "final_loss": final_loss,
        "final_rel_err": final_rel,
        "time_to_tol": time_to_tol,
        "steps_to_tol": steps_to_tol,
        "diverged": diverged,
        "loss_history": history,
        "lr": lr,
        "total_wall_s": total_wall_s,
    }


def stable_learning_rate(
    Y: np.ndarray,
    lambda_H: float,
    lambda_W: float,
    feature_dim: int,
    *,
    candidates: Sequence[float] = _DEFAULT_LR_GRID,
    probe_steps: int = 200,
    seed: int = 0,
    dtype: str = "float64",
    device: str = "cpu",
    require_stable_minimiser: bool = True,
    return_probes: bool = False,
) -> float | tuple[float, dict[float, dict[str, Any]]]:
    """Pick the fixed lr for the papers' protocol from a log grid (see module docstring).

    Candidates are tried from largest to smallest. If
    ``require_stable_minimiser`` is set, a candidate with ``lr *
    sharpness_at_minimiser(...) >= 2 (1 + 0.9)`` is rejected without a probe.
    Otherwise it gets ``probe_steps`` steps of :func:`run_reference` from the
    same initialisation (same ``seed``) as the real run. The probe fails if the
    loss becomes non-finite or ends above its initial value. The result is the
    accepted candidate with the lowest probe loss, taking the larger on ties.
    The search stops once an accepted candidate does worse than the best so far.
    Raises ``RuntimeError`` if no candidate is accepted. With
    ``return_probes=True`` it also returns ``{lr: info}``. ``info`` is the probe's
    result dict plus ``accepted``, ``reason`` and ``sharpness`` (``S*``), or just
    those three keys for a candidate rejected without a probe.
    """
    limit = 2.0 * (1.0 + _MOMENTUM)
    sharpness = sharpness_at_minimiser(Y, lambda_H, lambda_W)
    check_every = max(1, probe_steps // 20)
    probes: dict[float, dict[str, Any]] = {}
    best_lr: float | None = None
    best_loss = math.inf
    for lr in sorted(candidates, reverse=True):
        if require_stable_minimiser and lr * sharpness >= limit:
            probes[lr] = {
                "accepted": False,
                "reason": f"lr * S* = {lr * sharpness:.3g} >= {limit:g}",
                "sharpness": sharpness,
            }
            continue
        res = run_reference(
            Y,
            lambda_H,
            lambda_W,
            feature_dim,
            lr=lr,
            time_budget_s=math.inf,
            check_every=check_every,
            seed=seed,
            dtype=dtype,
            max_steps=probe_steps,
            device=device,
        )
        initial_loss = res["loss_history"][0][2]
        ok = (
            not res["diverged"]
            and math.isfinite(res["final_loss"])
            and res["final_loss"] <= initial_loss
        )
        res.update(
            accepted=ok,
            reason="probe ok" if ok else "probe diverged or loss increased",
            sharpness=sharpness,
        )
        probes[lr] = res
        if not ok:
            continue
        if res["final_loss"] < best_loss:
            best_lr, best_loss = lr, res["final_loss"]
        else:
            break
    if best_lr is None:
        raise RuntimeError(f"no acceptable learning rate among {tuple(candidates)}")
    return (best_lr, probes) if return_probes else best_lr


def _random_targets(M: int, n: int, seed: int = 0) -> np.ndarray:
    """Gaussian targets with a random covariance ``A A^T`` and a random mean."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, n))
    mean = rng.standard_normal(n)
    return rng.standard_normal((M, n)) @ A.T + mean


if __name__ == "__main__":
    n, d, M = 3, 256, 1000
    lam_H = lam_W = 1e-3
    Y = _random_targets(M, n, seed=0)
    target = closed_form_WWT(Y, lam_H, lam_W)
    print(f"torch {torch.__version__}, threads={torch.get_num_threads()}")
    print(f"n={n} d={d} M={M} lambda_H={lam_H} lambda_W={lam_W}")
    print("eig(target WWT) =", np.round(np.linalg.eigvalsh(target), 4))
    lr, probes = stable_learning_rate(Y, lam_H, lam_W, d, return_probes=True)
    print(f"S* (sharpness at minimiser) = {sharpness_at_minimiser(Y, lam_H, lam_W):.4f}")
    for cand, info in probes.items():
        loss = f" probe loss={info['final_loss']:.6g}" if "final_loss" in info else ""
        print(f"  lr={cand:g}: accepted={info['accepted']} ({info['reason']}){loss}")
    print(f"chosen lr = {lr:g}")
    out = run_reference(Y, lam_H, lam_W, d, lr=lr, time_budget_s=10.0, target_WWT=target, tol=1e-3)
    print(
        f"steps={out['steps']} train_s={out['wall_s']:.2f} "
        f"steps/s={out['steps'] / out['wall_s']:.0f} final_loss={out['final_loss']:.8g} "
        f"rel_err={out['final_rel_err']:.3e} time_to_tol(1e-3)={out['time_to_tol']} "
        f"diverged={out['diverged']}"
    )
