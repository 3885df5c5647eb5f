"""Cost per step of the dynamics solvers (momentum, Adam) against the memory floor and PyTorch.

Regression UFM (``ufm.RegressionUFM``, lambda_H = lambda_W = 1e-3, targets from ``ufm check``'s
built-in instance), (n, d) = (3, 256), M in {1e4, 1e5}, float64 and float32; solvers
``OptaxSolver(optax.sgd, learning_rate=0.05, momentum=0.9)`` and
``OptaxSolver(optax.adam, learning_rate=1e-3)`` (preconditioned, as ``ufm.solve`` runs them).

* **bandwidth**: the machine's stream bandwidth, the larger of a numpy copy (``np.copyto``, one
  thread; 2 x bytes moved) and a JAX triad ``a = a + 1.5 b`` in place inside a jitted loop
  (XLA's threads; 3 x bytes moved) on 256 MiB arrays, the minimum time of several repeats.
  Write-allocate traffic is not counted, so the bandwidth is the one a kernel can reach, not
  the bus's.
* **floor**: bytes that one step must move at least / bandwidth: ``H`` and the optimiser state
  (momentum: one buffer like the variables; Adam: two) read and written once, plus ``W``, ``b``
  read and written and ``Y`` read once (negligible beside ``H`` but counted). At M = 1e4 in
  float32 the working set (20-30 MB) fits in the 32 MiB L3 cache of this machine, so the
  "floor" there is a DRAM floor a cached run can beat.
* **ufm**: ``ufm.solve(problem, solver, rtol=0, max_steps=K)`` (``rtol = 0``: the stopping test
  is evaluated every step but never passes, so the run takes exactly ``K`` steps; checked),
  compiled beforehand; per step = ``(t(K2) - t(K1)) / (K2 - K1)``, which removes the set-up
  (initialisation, final objective, certificate) and keeps everything a step costs, the
  stopping test included. Each time is the minimum of ``--repeats`` runs (other processes share
  the machine's 2 cores; the minimum is the least disturbed).
* **unpc**: the same with ``precondition=False`` (the objective as written, the papers'
  protocol), timed in the same run: a step costs the same whatever the scales.
* **ufm/C**: the same with ``OptaxSolver(..., check_every=C)`` (``--check-every``, default 16):
  the stopping test and its norms after every C-th step only, the objective only where the
  optimiser reads it (momentum and Adam do not). ``K`` is a multiple of C, so the per-step time
  carries the tested step's share of 1/C.
* **torch**: the same objective (eq. 1, 1/M normalisation, ``_torch_reference._objective``),
  full batch, ``torch.optim.SGD(momentum=0.9)`` / ``torch.optim.Adam``, ``zero_grad``, forward,
  ``backward``, ``step`` per step, with ``torch.set_num_threads`` equal to the number of cores
  (what XLA uses); the faster of the default (foreach) and ``fused=True`` implementations,
  minimum over repeats of the mean over a block of steps.

Run: ``python benchmarks/dynamics.py`` (``--sizes 1e4`` / ``--dtypes float32`` for a part).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import ufm  # noqa: E402
from ufm._cli.check import default_targets  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).parent))

LAM = 1e-3
LR = {"momentum": 0.05, "adam": 1e-3}
STATE_COPIES = {"momentum": 1, "adam": 2}


def _min_time(fn, repeats):
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t0)
    return best


def stream_bandwidth(nbytes=256 * 2**20, repeats=7):
    """``(numpy copy, jax triad)`` bandwidths in bytes/s on arrays of ``nbytes``."""
    n = nbytes // 8
    a = np.random.default_rng(0).random(n)
    b = np.empty_like(a)
    copy = 2 * nbytes / _min_time(lambda: np.copyto(b, a), repeats)
    # The triad runs 10 times inside a jitted loop, in place: a fresh 256 MiB output per call
    # would time the kernel's page faults, not the memory.
    x, y = jnp.asarray(a), jnp.asarray(a[::-1].copy())
    reps = 10
    triad = jax.jit(
        lambda u, v: jax.lax.fori_loop(0, reps, lambda i, c: (c[0] + 1.5 * c[1], c[1]), (u, v))
    )
    triad(x, y)[0].block_until_ready()
    tri = 3 * nbytes * reps / _min_time(lambda: triad(x, y)[0], repeats)
    return copy, tri


def floor_bytes(M, n, d, itemsize, kind):
    """Bytes a step must move: variables and optimiser state read + written, ``Y`` read."""
    var = M * d + n * d + n
    return itemsize * (2 * var * (1 + STATE_COPIES[kind]) + M * n)


def make_solver(kind, check_every=1, precondition=True):
    opts = {"check_every": check_every, "precondition": precondition}
    if kind == "momentum":
        return ufm.OptaxSolver(optax.sgd, learning_rate=LR[kind], momentum=0.9, **opts)
    return ufm.OptaxSolver(optax.adam, learning_rate=LR[kind], **opts)


def ufm_per_step(problem, kind, k1, k2, repeats, check_every=1, precondition=True):
    solver = make_solver(kind, check_every, precondition)
    zero = jnp.zeros((), problem.dtype)

    def run(k):
        return ufm.solve(problem, solver, rtol=zero, atol=zero, max_steps=k)

    for k in (k1, k2):
        sol = jax.block_until_ready(run(k))  # compile
        if int(sol.num_steps) != k or int(sol.status) != ufm.Status.max_steps_reached:
            raise RuntimeError(
                f"{kind}: expected {k} steps, got {int(sol.num_steps)} "
                f"({ufm.Status(int(sol.status)).name})"
            )
    # Alternate the two lengths so that a burst of load elsewhere hits both alike.
    times = {k1: np.inf, k2: np.inf}
    for _ in range(repeats):
        for k in (k1, k2):
            times[k] = min(times[k], _min_time(lambda k=k: run(k), 1))
    return (times[k2] - times[k1]) / (k2 - k1)


def torch_per_step(Y, d, kind, dtype, steps, repeats):
    import torch
    from _torch_reference import _objective

    torch.set_num_threads(os.cpu_count())
    tdt = {"float64": torch.float64, "float32": torch.float32}[dtype]
    M, n = Y.shape
    Yt = torch.as_tensor(Y, dtype=tdt)
    gen = torch.Generator().manual_seed(0)
    best = {}
    for impl in ("foreach", "fused"):
        H = (0.1 * torch.randn(M, d, generator=gen, dtype=tdt)).requires_grad_(True)
        W = (0.1 * torch.randn(n, d, generator=gen, dtype=tdt)).requires_grad_(True)
        b = torch.zeros(n, dtype=tdt, requires_grad=True)
        flag = {"foreach": True} if impl == "foreach" else {"fused": True}
        try:
            if kind == "momentum":
                opt = torch.optim.SGD([H, W, b], lr=LR[kind] / M, momentum=0.9, **flag)
            else:
                opt = torch.optim.Adam([H, W, b], lr=LR[kind], **flag)
        except (RuntimeError, TypeError):  # fused not available for this build
            continue

        def step(H=H, W=W, b=b, opt=opt):
            opt.zero_grad(set_to_none=True)
            loss = _objective(H, W, b, Yt, LAM, LAM)
            loss.backward()
            opt.step()

        for _ in range(3):
            step()
        t = np.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            t = min(t, (time.perf_counter() - t0) / steps)
        best[impl] = t
        del H, W, b, opt
    impl = min(best, key=best.get)
    return best[impl], impl


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1e4,1e5")
    p.add_argument("--dtypes", default="float64,float32")
    p.add_argument("--kinds", default="momentum,adam")
    p.add_argument("--n", type=int, default=3)
    p.add_argument("--d", type=int, default=256)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--no-torch", action="store_true")
    p.add_argument(
        "--check-every",
        type=int,
        default=16,
        help="also time OptaxSolver(..., check_every=C): the stopping test every C steps",
    )
    args = p.parse_args(argv)
    n, d = args.n, args.d
    bw_copy, bw_triad = stream_bandwidth()
    bw = max(bw_copy, bw_triad)
    print(
        f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} cores; "
        f"stream bandwidth: numpy copy {bw_copy / 1e9:.1f} GB/s, jax triad "
        f"{bw_triad / 1e9:.1f} GB/s; floor uses {bw / 1e9:.1f} GB/s",
        flush=True,
    )
    C = args.check_every
    rows = []
    for M in (int(float(s)) for s in args.sizes.split(",")):
        k1, k2 = (10, 60) if M <= 20_000 else (3, 13)
        for dtype in args.dtypes.split(","):
            Y = default_targets(n, M, 0)
            problem = ufm.RegressionUFM(jnp.asarray(Y, dtype), LAM, LAM, d)
            item = jnp.dtype(dtype).itemsize
            for kind in args.kinds.split(","):
                t_ufm = ufm_per_step(problem, kind, k1, k2, args.repeats)
                t_unpc = ufm_per_step(problem, kind, k1, k2, args.repeats, precondition=False)
                # Whole blocks of C steps (C - 1 light, 1 tested), so the difference keeps the
                # test's share of 1/C.
                c1, c2 = C, C * (1 + max(1, round((k2 - k1) / C)))
                t_check = ufm_per_step(problem, kind, c1, c2, args.repeats, C)
                floor = floor_bytes(M, n, d, item, kind) / bw
                if args.no_torch:
                    t_torch, impl = float("nan"), "-"
                else:
                    t_torch, impl = torch_per_step(Y, d, kind, dtype, k2 - k1, args.repeats)
                rows.append((M, dtype, kind, floor, t_ufm, t_unpc, t_check, t_torch, impl))
                print(
                    f"  M={M} {dtype} {kind}: ufm {t_ufm * 1e3:.2f} ms, precondition=False "
                    f"{t_unpc * 1e3:.2f} ms, check_every={C} "
                    f"{t_check * 1e3:.2f} ms, floor {floor * 1e3:.2f} ms, torch "
                    f"{t_torch * 1e3:.2f} ms ({impl})",
                    flush=True,
                )
    print(
        f"\nufm: the stopping test after every step (the default); unpc: the same with "
        f"precondition=False; ufm/{C}: OptaxSolver(..., check_every={C})\n"
        f"{'M':>7} {'dtype':>8} {'solver':>9} {'floor ms':>9} {'ufm ms':>8} {'/floor':>7} "
        f"{'unpc ms':>8} {'unpc/ufm':>8} "
        f"{f'ufm/{C} ms':>10} {'/floor':>7} {'torch ms':>9} {'torch/ufm':>9} "
        f"{f'torch/ufm/{C}':>12}  torch impl"
    )
    for M, dtype, kind, floor, t_ufm, t_unpc, t_check, t_torch, impl in rows:
        print(
            f"{M:>7} {dtype:>8} {kind:>9} {floor * 1e3:>9.2f} {t_ufm * 1e3:>8.2f} "
            f"{t_ufm / floor:>7.2f} {t_unpc * 1e3:>8.2f} {t_unpc / t_ufm:>8.2f} "
            f"{t_check * 1e3:>10.2f} {t_check / floor:>7.2f} "
            f"{t_torch * 1e3:>9.2f} {t_torch / t_ufm:>9.2f} {t_torch / t_check:>12.2f}  {impl}"
        )
    print("\nTargets: ufm/floor <= 2 and torch/ufm >= 2.")
    for M, dtype, kind, floor, t_ufm, _, t_check, t_torch, _ in rows:
        verdict = []
        for name, t in (("every step", t_ufm), (f"check_every={C}", t_check)):
            ok = t / floor <= 2 and (np.isnan(t_torch) or t_torch / t >= 2)
            verdict.append(f"{name} {'met' if ok else 'NOT met'}")
        print(f"  M={M} {dtype} {kind}: {', '.join(verdict)}")


if __name__ == "__main__":
    main()
