"""The ``ufm`` command: the top floor of the package (it may use :mod:`theory`; nothing in
``ufm`` below it does).

Each sub-command lives in its own module with ``register(subparsers)``, which adds its parser
and sets ``run=fn(args) -> int``. Exit status: what the sub-command returns (0 success, 1 a
failed check), 2 for bad arguments or bad input files, never a traceback for those. ``ufm``
with no arguments prints the help to stdout and exits 0; ``ufm --version`` prints
``ufm <version>`` (``ufm.__version__``) and exits 0.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback

from . import check, metrics, sweep
from .check import default_targets as default_targets

COMMANDS = (check, metrics, sweep)


EPILOG = """\
Run 'ufm COMMAND --help' for a command's options. 'ufm' alone prints this help (exit 0).
Exit status: 0 success, 1 a failed check, 2 bad arguments or bad input (a one-line message)."""


def _version() -> str:
    from ufm import __version__

    return __version__


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ufm",
        description="Unconstrained Feature Model: solve, check against theory.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    if not (sys.argv[1:] if argv is None else argv):
        parser.print_help()
        return 0
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, TypeError, OSError) as err:
        parser.exit(2, f"ufm {args.command}: error: {err}\n")


def run() -> None:
    """The ``ufm`` console script: :func:`main`, then exit without the interpreter's teardown.

    Tearing down JAX's runtime costs about 0.2 s, a tenth of a warm ``ufm check``, and can abort
    while a compiling thread is still running. Every command has written and closed its files
    when it returns or raises, so only the standard streams are flushed. Exit status: what
    :func:`main` returns or exits with (2 for bad input), 130 on Ctrl-C, 1 with a traceback for
    anything unexpected, 120 when the output cannot be flushed (as Python itself does)."""
    try:
        code = main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if not isinstance(e.code, int | None):
            print(e.code, file=sys.stderr)
    except KeyboardInterrupt:
        code = 130
    except BaseException:  # noqa: BLE001 - a bug: show it, then leave the same way
        traceback.print_exc()
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            code = code or 120
    os._exit(code or 0)


if __name__ == "__main__":
    run()
