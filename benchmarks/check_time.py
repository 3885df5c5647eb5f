"""Wall time of ``ufm check`` (the command line's default run) cold, warm and without caches.

Each run is a fresh process (``python -c "from ufm._cli import run; run()"``, what the ``ufm``
console script does) with its own cache directory (``UFM_CACHE_DIR``):

* **cold**: an empty cache directory (first run on a machine: tracing, lowering, compiling,
  writing the executables);
* **warm**: the same directory again (the compiled executables are loaded from disk:
  ``ufm/_cli/_programs.py``);
* **--no-cache**: no cache at all (every run as the first);
* **import**: ``import ufm._cli.check, theory`` alone (the floor of every run).

Each row is the median and the minimum of ``--repeat`` runs (the machine may be shared). The
issue's targets: under 3 s cold and 1.5 s warm on a 2-core machine.

Run: ``python benchmarks/check_time.py [--repeat 5] [--args "--problem ce"]``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

RUN = "import sys; from ufm._cli import run; sys.argv = ['ufm', 'check', *sys.argv[1:]]; run()"
IMPORT = "import ufm._cli.check, theory"


def _time(code: str, args: list[str], cache: str | None) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("UFM_NO_COMPILE_CACHE",)}
    if cache is None:
        env["UFM_NO_COMPILE_CACHE"] = "1"
    else:
        env["UFM_CACHE_DIR"] = cache
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, env=env)
    elapsed = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"ufm check {' '.join(args)} failed:\n{r.stdout.decode()}")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--args", default="", help="options passed to ufm check")
    opts = ap.parse_args()
    args = shlex.split(opts.args)
    rows = {"import": [], "cold": [], "warm": [], "--no-cache": []}
    for _ in range(opts.repeat):  # interleaved, so that a busy spell hits every row alike
        with tempfile.TemporaryDirectory() as cache:
            rows["import"].append(_time(IMPORT, [], None))
            rows["cold"].append(_time(RUN, args, cache))
            rows["warm"].append(_time(RUN, args, cache))
            rows["--no-cache"].append(_time(RUN, args, None))
    print(f"ufm check {opts.args}  ({opts.repeat} runs each, {os.cpu_count()} cores)")
    print(f"{'':12s} {'median':>8s} {'min':>8s}")
    for name, ts in rows.items():
        print(f"{name:12s} {statistics.median(ts):7.2f}s {min(ts):7.2f}s")


if __name__ == "__main__":
    main()
