"""The convex solver behind :mod:`theory.ce_convex`: the primal and dual of the class-mean
problem, accelerated proximal gradient with singular-value soft-thresholding, the factored
Newton polish and the duality-gap certificate (the mathematics is in :mod:`theory.ce_convex`'s
docstring and docs/theory.md section 11). numpy float64, independent of the UFM solvers."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ufm._validate import bias_option, check_label_smoothing, is_concrete, positive_scalar


def _lse(L):
    m = L.max(axis=1, keepdims=True)
    E = np.exp(L - m)
    s = E.sum(axis=1, keepdims=True)
    return (m + np.log(s))[:, 0], E / s


class _Setup(NamedTuple):
    w: np.ndarray
    sqn: np.ndarray
    q: np.ndarray
    tau: float
    mode: str
    lb: float
    N: float


def _smooth(st: _Setup, X, b):
    """Data term ``f``, its gradients in ``X`` and ``b``, and the logit gradient ``G``."""
    L = X / st.sqn[:, None] + b
    lse, P = _lse(L)
    f = float(np.sum(st.w * (lse - np.sum(st.q * L, axis=1))))
    G = st.w[:, None] * (P - st.q)
    return f, G / st.sqn[:, None], G.sum(axis=0), G, P


def _primal(st: _Setup, X, b):
    f = _smooth(st, X, b)[0]
    s = np.linalg.svd(X, compute_uv=False)
    val = f + st.tau * float(s.sum())
    if st.mode == "reg":
        val += st.lb / 2 * float(b @ b)
    return val


def _svt(A, t):
    U, s, Vt = np.linalg.svd(A)
    s = np.maximum(s - t, 0.0)
    return (U * s) @ Vt


def _entropy(p):
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=1)


def _dual(st: _Setup, G, P):
    """A feasible dual point from the logit gradient ``G = w (P - q)`` and its value."""
    if st.mode == "free":
        c = G.sum(axis=0)
        G = G - st.w[:, None] * c[None, :]
        P = P - c[None, :]
    A = G / st.sqn[:, None]
    nrm = float(np.linalg.norm(A, 2))
    alpha = 1.0 if nrm <= st.tau else st.tau / nrm
    G = alpha * G
    p = alpha * P + (1 - alpha) * st.q
    if np.any(p < 0):
        return G, -math.inf
    val = float(np.sum(st.w * _entropy(p)))
    if st.mode == "reg":
        s = G.sum(axis=0)
        val -= float(s @ s) / (2 * st.lb)
    return G, val


def _solve(st: _Setup, X, b, tol: float, max_iter: int, check_every: int = 10):
    """FISTA with backtracking and restarts until the duality gap is <= ``tol``."""
    K = X.shape[0]
    has_b = st.mode != "none"
    # Step scale s: X moves by N s grad, b by s grad (metric diag(N, 1)); s = 1/2 (bias) or 1
    # (none) is always accepted by the Hessian bound, larger ones by backtracking.
    s = 1.0 if not has_b else 0.5
    Y, yb = X.copy(), b.copy()
    t = 1.0
    gap, G_dual = math.inf, np.zeros((K, K))
    for it in range(max_iter):
        f_y, gX, gb, _, _ = _smooth(st, Y, yb)
        while True:
            X_new = _svt(Y - st.N * s * gX, st.N * s * st.tau)
            if st.mode == "free":
                b_new = yb - s * gb
            elif st.mode == "reg":
                b_new = (yb - s * gb) / (1 + s * st.lb)
            else:
                b_new = yb
            dX, db = X_new - Y, b_new - yb
            f_new = _smooth(st, X_new, b_new)[0]
            quad = f_y + np.sum(gX * dX) + gb @ db + (np.sum(dX**2) / st.N + db @ db) / (2 * s)
            if f_new <= quad + 1e-15 * abs(f_y) or s < 1e-12:
                break
            s /= 2
        # Restart when the step goes against the momentum (O'Donoghue & Candes 2015).
        if np.sum((Y - X_new) * (X_new - X)) + (yb - b_new) @ (b_new - b) > 0:
            t = 1.0
            Y, yb = X_new.copy(), b_new.copy()
            t_new = 1.0
        else:
            t_new = (1 + math.sqrt(1 + 4 * t * t)) / 2
            Y = X_new + (t - 1) / t_new * (X_new - X)
            yb = b_new + (t - 1) / t_new * (b_new - b)
        X, b, t = X_new, b_new, t_new
        s *= 1.25
        if it % check_every == 0 or it == max_iter - 1:
            _, _, _, G, P = _smooth(st, X, b)
            G_dual, d_val = _dual(st, G, P)
            P_val = _primal(st, X, b)
            gap = P_val - d_val
            if gap <= tol:
                break
    return X, b, gap, G_dual, it + 1


def _factored(st: _Setup, v, r: int):
    """The factored (Burer-Monteiro) objective at ``X = A B^T`` with penalty
    ``tau/2 (||A||^2 + ||B||^2)`` (equal to ``tau ||X||_*`` at balanced factors), and its
    gradient; ``v = [A, B, b]`` flattened."""
    K = st.w.shape[0]
    A, B = v[: K * r].reshape(K, r), v[K * r : 2 * K * r].reshape(K, r)
    b = v[2 * K * r :] if st.mode != "none" else np.zeros(K)
    X = A @ B.T
    f, _, _, G, _ = _smooth(st, X, b)
    GS = G / st.sqn[:, None]
    val = f + st.tau / 2 * (np.sum(A**2) + np.sum(B**2))
    parts = [GS @ B + st.tau * A, GS.T @ A + st.tau * B]
    if st.mode != "none":
        gb = G.sum(axis=0)
        if st.mode == "reg":
            val += st.lb / 2 * float(b @ b)
            gb = gb + st.lb * b
        parts.append(gb)
    return val, np.concatenate([p.ravel() for p in parts])


def _polish(st: _Setup, X, b, r: int, iters: int = 30):
    """Newton's method on the factored objective at rank ``r`` (central-difference Hessian,
    minimum-norm steps across the rotation gauge, backtracking), from ``X = U S V^T``."""
    K = st.w.shape[0]
    U, s, Vt = np.linalg.svd(X)
    A, B = U[:, :r] * np.sqrt(s[:r]), Vt[:r].T * np.sqrt(s[:r])
    parts = [A.ravel(), B.ravel()] + ([b] if st.mode != "none" else [])
    v = np.concatenate(parts)
    val, g = _factored(st, v, r)
    m = v.size
    for _ in range(iters):
        if m == 0 or np.linalg.norm(g) <= 1e-15:
            break
        h = 1e-5 * max(1.0, float(np.abs(v).max()))
        Hm = np.empty((m, m))
        for i in range(m):
            e = np.zeros(m)
            e[i] = h
            Hm[:, i] = (_factored(st, v + e, r)[1] - _factored(st, v - e, r)[1]) / (2 * h)
        # The rotation gauge (A, B) -> (A O, B O): project it out (the curvature there is set to
        # the largest one).
        A, B = v[: K * r].reshape(K, r), v[K * r : 2 * K * r].reshape(K, r)
        # With a free bias, b -> b + c 1 is flat too.
        pairs = [(i, j) for i in range(r) for j in range(i + 1, r)]
        T = np.zeros((m, len(pairs) + (st.mode == "free")))
        for c, (i, j) in enumerate(pairs):
            Om = np.zeros((r, r))
            Om[i, j], Om[j, i] = 1.0, -1.0
            T[: 2 * K * r, c] = np.concatenate([(A @ Om).ravel(), (B @ Om).ravel()])
        if st.mode == "free":
            T[2 * K * r :, -1] = 1.0
        Ug, sg, _ = np.linalg.svd(T, full_matrices=False)
        Qg = Ug[:, sg > 1e-12 * max(float(sg.max(initial=0.0)), 1e-300)]
        Pr = np.eye(m) - Qg @ Qg.T
        Hs = Pr @ ((Hm + Hm.T) / 2) @ Pr
        ev, Q = np.linalg.eigh(Hs + max(float(np.linalg.norm(Hs, 2)), 1e-300) * (Qg @ Qg.T))
        keep = ev > 1e-14 * float(ev[-1])
        step = -Q[:, keep] @ ((Q[:, keep].T @ (Pr @ g)) / ev[keep])
        a, gn = 1.0, np.linalg.norm(g)
        while a > 1e-8:
            new_val, new_g = _factored(st, v + a * step, r)
            # Near the minimum the value changes below its rounding: accept a step that
            # shrinks the gradient without raising the value beyond rounding.
            flat = new_val <= val + 1e-12 * (1 + abs(val)) and np.linalg.norm(new_g) < gn / 2
            if new_val < val or flat:
                break
            a /= 2
        else:
            break
        if new_val == val and np.linalg.norm(new_g) >= np.linalg.norm(g):
            break
        v, val, g = v + a * step, new_val, new_g
        if a * np.linalg.norm(step) <= 1e-14 * (1 + np.linalg.norm(v)):
            break
    A, B = v[: K * r].reshape(K, r), v[K * r : 2 * K * r].reshape(K, r)
    return A @ B.T, (v[2 * K * r :] if st.mode != "none" else b)


def _certify(st: _Setup, X, b):
    _, _, _, G, P = _smooth(st, X, b)
    G_dual, d_val = _dual(st, G, P)
    return _primal(st, X, b) - d_val, G_dual


def _rank(X) -> int:
    s = np.linalg.svd(X, compute_uv=False)
    return int(np.sum(s > 1e-7 * max(1.0, float(s[0]))))


def _setup(class_sizes, lambda_H, lambda_W, bias, label_smoothing) -> _Setup:
    n = np.asarray(class_sizes, dtype=np.float64)
    if n.ndim != 1 or n.shape[0] < 2 or not np.all(np.isfinite(n)):
        raise ValueError(f"class_sizes must be a 1-D sequence of K >= 2 sizes, got {class_sizes!r}")
    if np.any(n <= 0):
        raise ValueError(f"class_sizes must all be > 0 (no empty class), got {n.tolist()}")
    K = n.shape[0]
    lH, lW = _positive(lambda_H, "lambda_H"), _positive(lambda_W, "lambda_W")
    delta = float(check_label_smoothing(label_smoothing, np.float64))
    mode, _ = bias_option(bias)  # checked as the problem checks it; lambda_b read in float64
    lb = float(np.asarray(bias)) if mode == "reg" else 0.0
    if mode == "reg" and lb == 0:
        mode = "free"
    N = float(n.sum())
    q = (1 - delta) * np.eye(K) + delta / K
    return _Setup(n / N, np.sqrt(n), q, math.sqrt(lH * lW), mode, lb, N)


def _positive(x, name: str) -> float:
    """A concrete real scalar > 0 as a float (the shared check, in float64)."""
    v = positive_scalar(x, name, np.float64, "a certified optimum")
    if not is_concrete(v):
        raise ValueError(f"{name} must be a concrete number for a certified optimum, got {x!r}")
    return float(v)
