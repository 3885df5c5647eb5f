"""Progress of a sweep on stderr: tqdm where installed, else one line per chunk."""

from __future__ import annotations

import sys
import time


class Progress:
    """Progress on stderr: tqdm where installed, else one line per chunk."""

    def __init__(self, progress, total: int, done: int):
        self.total, self.done, self.start_done = total, done, done
        self.t0 = time.perf_counter()
        self.fn = progress if callable(progress) and not isinstance(progress, bool) else None
        on = sys.stderr.isatty() if progress is None else bool(progress)
        self.bar = None
        self.on = on and self.fn is None
        if self.on:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total, initial=done, unit="pt", file=sys.stderr)

    def note(self, text: str) -> None:
        if self.on or self.fn is not None:
            print(f"ufm sweep: {text}", file=sys.stderr)

    def update(self, k: int) -> None:
        self.done += k
        dt = time.perf_counter() - self.t0
        if self.fn is not None:
            self.fn(self.done, self.total, dt)
        elif self.bar is not None:
            self.bar.update(k)
        elif self.on:
            rate = (self.done - self.start_done) / max(dt, 1e-9)
            left = (self.total - self.done) / rate if rate > 0 else float("inf")
            print(
                f"ufm sweep: {self.done}/{self.total} points ({100 * self.done / self.total:.0f}%)"
                f", {rate:.1f} points/s, {left:.0f} s left",
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
