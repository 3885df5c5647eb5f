"""PyTorch re-implementation of the published direct-UFM classification protocol (benchmark only).

Not part of ``ufm``; needs the ``bench`` extra. Objective, samples first (``H (N, d)``,
``W (K, d)``, ``b (K,)``), exactly as :class:`ufm.ClassificationUFM` (Zhu et al., NeurIPS 2021;
Tirer & Bruna, ICML 2022): data term averaged over ``N`` (cross-entropy, or
``1/(2N) ||H W^T + 1 b^T - Y||^2`` with one-hot ``Y``), ``lambda_H/2 ||H||^2``,
``lambda_W/2 ||W||^2``, free (unregularised) bias.

Protocol (the direct UFM experiments of Zhu et al.'s code, tding1/Neural-Collapse): full-batch
SGD with momentum 0.9 and a fixed learning rate 0.1, ``H, W ~ N(0, 0.1^2)``, ``b = 0``, 30,000
steps, collapse metrics (NC1 with a pseudo-inverse, NC2, NC3) and the relative ``W W^T`` error
computed at every step, as the published scripts log them. ``time_total`` includes the metric
work (part of the protocol's cost); ``time_train`` is the optimiser steps alone.
"""

from __future__ import annotations

import time

import numpy as np
import torch


def _objective(H, W, b, y, Y1, lam_H, lam_W, loss):
    Z = H @ W.T + b
    if loss == "ce":
        data = torch.nn.functional.cross_entropy(Z, y)
    else:
        data = 0.5 * ((Z - Y1) ** 2).sum() / H.shape[0]
    return data + 0.5 * lam_H * (H**2).sum() + 0.5 * lam_W * (W**2).sum()


def _metrics(H, W, y, K):
    mu = torch.stack([H[y == c].mean(0) for c in range(K)])
    muG = H.mean(0)
    Md = mu - muG
    Sw = (H - mu[y]).T @ (H - mu[y]) / H.shape[0]
    Sb = Md.T @ Md / K
    nc1 = torch.trace(Sw @ torch.linalg.pinv(Sb, rtol=1e-10)) / K
    G = W @ W.T
    etf = (torch.eye(K, dtype=H.dtype) - 1.0 / K) / (K - 1) ** 0.5
    nc2 = torch.linalg.norm(G / torch.linalg.norm(G) - etf)
    nc3 = ((W / torch.linalg.norm(W) - Md / torch.linalg.norm(Md)) ** 2).sum()
    return float(nc1), float(nc2), float(nc3)


def run_reference(
    labels: np.ndarray,
    num_classes: int,
    lambda_H: float,
    lambda_W: float,
    feature_dim: int,
    *,
    loss: str,
    target_WWT: np.ndarray,
    lr: float = 0.1,
    steps: int = 30_000,
    seed: int = 0,
    levels=(1e-2, 1e-4, 1e-6, 1e-8),
) -> dict:
    """Train with the protocol above; return final error, metrics and the first time (total,
    metrics included) at which the relative ``W W^T`` error fell below each of ``levels``."""
    torch.manual_seed(seed)
    dt = torch.float64
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    N, K, d = len(labels), num_classes, feature_dim
    Y1 = torch.nn.functional.one_hot(y, K).to(dt)
    H = (0.1 * torch.randn(N, d, dtype=dt)).requires_grad_(True)
    W = (0.1 * torch.randn(K, d, dtype=dt)).requires_grad_(True)
    b = torch.zeros(K, dtype=dt, requires_grad=True)
    opt = torch.optim.SGD([H, W, b], lr=lr, momentum=0.9)
    T = torch.as_tensor(np.array(target_WWT), dtype=dt)
    Tn = float(torch.linalg.norm(T))
    reached = {lv: None for lv in levels}
    t_train = 0.0
    start = time.perf_counter()
    err = float("nan")
    for step in range(1, steps + 1):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        f = _objective(H, W, b, y, Y1, lambda_H, lambda_W, loss)
        f.backward()
        opt.step()
        t_train += time.perf_counter() - t0
        with torch.no_grad():
            nc = _metrics(H, W, y, K)
            err = float(torch.linalg.norm(W @ W.T - T)) / Tn
        if not np.isfinite(err):
            break
        for lv in levels:
            if reached[lv] is None and err <= lv:
                reached[lv] = (step, time.perf_counter() - start)
    return {
        "steps": step,
        "time_total": time.perf_counter() - start,
        "time_train": t_train,
        "final_rel_err": err,
        "final_loss": float(f.detach()),
        "nc": nc,
        "reached": reached,
    }
