"""Sweep benchmark: a whole phase diagram in one call, against a Python loop of single solves.

* ``regression``: 10,000 (lambda_H, lambda_W) points (a 100 x 100 log grid over [1e-4, 1]) of
  a regression UFM with (n, d, M) = (3, 256, 10^4) (targets: ``ufm check``'s built-in random
  instance), float64, by the exact solver (``ufm.sweep``'s ``n x n`` path). Timed cold (the
  first call, compilation included) and warm (the best of ``--repeat`` further calls, new
  values, no compilation; the machine may be shared). The same warm time at M = 10^5: the
  per-point cost does not grow with M (the targets' moments are formed once per sweep).
  Accuracy: every point against the closed form (``theory.regression``): the loss gap and the
  relative errors of ``W W^T`` and of the sample Gram ``H H^T``, targets 1e-8.
* ``loop``: the same grid as a Python loop of ``ufm.solve(RegressionUFM(...), "exact")`` (one
  jitted call per point, compiled once, loss fetched to the host): a random subset of
  ``--loop-points`` points is timed and the time extrapolated to the whole grid (said so in
  the table); the ratio loop / warm sweep (goal: at least 100x).
* ``ce``: a classification cross-entropy sweep, K = 10 balanced classes of 100, d = 64, free
  bias, 1,000 points (a 40 x 25 log grid), L-BFGS: time (compilation included), success rate,
  and the largest loss gap to the closed form, with the class-mean reduction (the default:
  ``ClassificationUFM.reduction``, 1,290 variables a point) and, on a 25-point subset
  extrapolated to 1,000 points, without it (``reduction=False``: 65,290 variables a point).
* ``rss``: peak resident memory of the 10,000-point regression sweep by chunk size, each in a
  fresh subprocess (peak RSS only grows within a process; compilation included). Chunks are
  capped at 4096 points a CPU device (``ufm/_sweep/chunks.py``: larger ones hung in XLA's CPU
  runtime with jax 0.10.2).

Not here (the issue's optional part): the dynamics solvers' cost per step against the memory
floor and PyTorch; ``benchmarks/regression.py`` times them.

Run: ``python benchmarks/sweep.py`` (a few minutes on 2 cores); ``--quick`` for a smaller run.
Figures on a shared machine are approximate.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402

import theory  # noqa: E402
import ufm  # noqa: E402
from ufm._cli.check import default_targets  # noqa: E402


def regression_problem(M: int) -> ufm.RegressionUFM:
    return ufm.RegressionUFM(default_targets(3, M, 0), 1.0, 1.0, 256)


def grid(num: int, scale: float = 1.0) -> dict:
    lams = np.geomspace(1e-4, 1.0, num) * scale
    return {"lambda_H": lams, "lambda_W": lams}


def rss_child(chunk: int, num: int, M: int) -> None:
    t = time.perf_counter()
    table = ufm.sweep(regression_problem(M), grid(num), chunk_size=chunk)
    dt = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB (Linux)
    ok = int(np.sum(table["status"] == "successful"))
    print(f"{peak:.0f} {dt:.2f} {ok}")


def accuracy(table) -> dict:
    return {
        "loss gap": float(np.max(np.abs(table["loss_gap"]))),
        "W W^T": float(np.max(table["err_gram_W"])),
        "H H^T": float(np.max(table["err_gram_H"])),
    }


class _Rows(list):
    """Rows printed as they come (a long run shows its figures early)."""

    def append(self, row) -> None:
        super().append(row)
        print(f"{row[0]:<46}  {row[1]:>12}  {row[2]}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2,500 points, M = 10^3, fewer rows")
    ap.add_argument("--loop-points", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=2, help="warm runs (the best is reported)")
    ap.add_argument("--chunks", default="256,1024,2048,4096", help="chunk sizes for rss")
    ap.add_argument("--rss-child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    num, M = (50, 1000) if args.quick else (100, 10_000)
    if args.rss_child is not None:
        return rss_child(args.rss_child, num, M)

    rows = _Rows()
    print(f"ufm sweep benchmark ({jax.devices()[0].platform}, {os.cpu_count()} CPUs)", flush=True)
    p = regression_problem(M)
    g = grid(num)
    npts = num * num
    t = time.perf_counter()
    table = ufm.sweep(p, g)
    cold = time.perf_counter() - t
    warm, acc = float("inf"), accuracy(table)
    for r in range(max(args.repeat, 1)):
        t = time.perf_counter()
        table2 = ufm.sweep(p, grid(num, 1.01 + 0.01 * r))
        warm = min(warm, time.perf_counter() - t)
        acc = {k: max(v, accuracy(table2)[k]) for k, v in acc.items()}
    within = int(
        np.sum(
            (np.abs(table["loss_gap"]) <= 1e-8)
            & (table["err_gram_W"] <= 1e-8)
            & (table["err_gram_H"] <= 1e-8)
        )
    )
    ok = int(np.sum(table["status"] == "successful"))
    ranks = int(np.sum(table["rank"] == table["rank_theory"]))
    rows.append((f"regression sweep, {npts} points, cold", f"{cold:.2f} s", "incl. compile"))
    rows.append((f"regression sweep, {npts} points, warm", f"{warm:.2f} s", "target < 10 s"))
    rows.append(("  points/s (warm)", f"{npts / warm:.0f}", ""))
    p10 = regression_problem(10 * M)
    ufm.sweep(p10, g)  # compile (the executable does not depend on M; the moments do)
    warm10 = float("inf")
    for r in range(max(args.repeat, 1)):
        t = time.perf_counter()
        ufm.sweep(p10, grid(num, 1.01 + 0.01 * r))
        warm10 = min(warm10, time.perf_counter() - t)
    rows.append((f"  warm at M = {10 * M}", f"{warm10:.2f} s",
                 f"per point {1e6 * warm10 / npts:.0f} us vs {1e6 * warm / npts:.0f} us at "
                 f"M = {M}"))  # fmt: skip
    rows.append(("  successful", f"{ok}/{npts}", ""))
    rows.append(("  within 1e-8 of the closed form", f"{within}/{npts}", "loss, WW^T, HH^T"))
    for k, v in acc.items():
        rows.append((f"  max error {k}", f"{v:.1e}", "target 1e-8"))
    rows.append(("  collapse rank = theory", f"{ranks}/{npts}", ""))
    rows.append(("  steps (median / max)", f"{np.median(table['steps']):.0f} / "
                 f"{table['steps'].max()}", ""))  # fmt: skip

    # A Python loop of single solves on a random subset, extrapolated.
    rng = np.random.default_rng(0)
    pick = rng.choice(npts, size=min(args.loop_points, npts), replace=False)
    lh, lw = table["lambda_H"][pick], table["lambda_W"][pick]
    Y = default_targets(3, M, 0)
    float(ufm.solve(ufm.RegressionUFM(Y, 0.5, 0.5, 256), "exact").loss)  # compile
    t = time.perf_counter()
    losses = [float(ufm.solve(ufm.RegressionUFM(Y, a, b, 256), "exact").loss) for a, b in
              zip(lh, lw, strict=True)]  # fmt: skip
    per = (time.perf_counter() - t) / len(pick)
    agree = np.max(np.abs(np.array(losses) - table["loss"][pick]) / np.abs(table["loss"][pick]))
    loop = per * npts
    rows.append(
        (f"Python loop of ufm.solve, {npts} points", f"{loop:.1f} s",
         f"extrapolated from {len(pick)} timed points ({per * 1e3:.1f} ms each)")
    )  # fmt: skip
    rows.append(("  ratio loop / warm sweep", f"{loop / warm:.0f}x", "goal >= 100x"))
    rows.append(("  loop vs sweep loss (max rel. diff.)", f"{agree:.1e}", ""))

    # Peak RSS by chunk size, each in a fresh process.
    for chunk in (int(c) for c in args.chunks.split(",")):
        out = subprocess.run(
            [sys.executable, __file__, "--rss-child", str(chunk)]
            + (["--quick"] if args.quick else []),
            capture_output=True,
            text=True,
            env={**os.environ},
            check=True,
            timeout=900,
        ).stdout.split()
        rows.append((f"peak RSS, chunk_size = {chunk}", f"{float(out[0]):.0f} MB",
                     f"{float(out[1]):.1f} s incl. compile; target < 2 GB"))  # fmt: skip

    # Cross-entropy classification.
    K, per_class = 10, 100
    labels = theory.classification.balanced_labels(K, per_class)
    ce = ufm.ClassificationUFM(labels, K, 1e-3, 1e-3, 64, loss="ce", bias="free")
    n_ce = (40, 25) if not args.quick else (10, 10)
    ce_grid = {
        "lambda_H": np.geomspace(1e-5, 1e-2, n_ce[0]),
        "lambda_W": np.geomspace(1e-5, 1e-2, n_ce[1]),
    }
    t = time.perf_counter()
    ct = ufm.sweep(ce, ce_grid)
    ce_time = time.perf_counter() - t
    succ = ct["status"] == "successful"
    npc = n_ce[0] * n_ce[1]
    rows.append((f"CE sweep K = 10 x 100, d = 64, {npc} points", f"{ce_time:.1f} s",
                 "L-BFGS, class-mean reduction, incl. compile"))  # fmt: skip
    rows.append(("  success rate", f"{succ.mean():.3f}", ""))
    rows.append(("  steps (median / max)", f"{np.median(ct['steps']):.0f} / {ct['steps'].max()}",
                 ""))  # fmt: skip
    if np.any(succ):
        rows.append(("  max |loss gap| (successful)", f"{np.max(np.abs(ct['loss_gap'][succ])):.1e}",
                     ""))  # fmt: skip
    names, counts = np.unique(ct["status"], return_counts=True)
    rows.append(("  statuses", ", ".join(f"{n} {c}" for n, c in zip(names, counts, strict=True)),
                 ""))  # fmt: skip
    # Without the reduction: a subset (every 8th lambda_H, every 6th lambda_W), extrapolated.
    sub = {"lambda_H": ce_grid["lambda_H"][::8], "lambda_W": ce_grid["lambda_W"][::6]}
    nsub = len(sub["lambda_H"]) * len(sub["lambda_W"])
    ufm.sweep(ce, {"lambda_H": [0.5], "lambda_W": [0.5]}, reduction=False)  # compile (chunks of 1)
    t = time.perf_counter()
    cf = ufm.sweep(ce, sub, reduction=False)
    per = (time.perf_counter() - t) / nsub
    sf = cf["status"] == "successful"
    gap = np.max(np.abs(cf["loss_gap"]))
    rows.append((f"  without the reduction, {npc} points", f"{per * npc:.0f} s",
                 f"extrapolated from {nsub} points ({per:.2f} s each, warm), success "
                 f"{sf.mean():.3f}, max |loss gap| {gap:.1e}"))  # fmt: skip
    rows.append(("  speed-up of the reduction", f"{per * npc / ce_time:.0f}x",
                 "incl. the reduced sweep's compile"))  # fmt: skip


if __name__ == "__main__":
    main()
