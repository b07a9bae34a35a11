"""One line, not a traceback, for a signal while the ``gradflow`` console script starts.

Importing the package (JAX, Diffrax, xarray, ...) takes seconds; a SIGINT or SIGTERM in that
time would otherwise print Python's traceback. Imported first by ``gradflow/__init__.py``; it
installs its handlers only in the console script (``sys.argv[0]`` named ``gradflow``) and only
over Python's default SIGINT handler, so a library user's process is left alone.
``gradflow._cli.main`` installs its own handlers once it runs (docs/failures.md).
"""

import os
import signal
import sys


def _interrupted(signum, frame):  # exits the process: nothing was computed yet
    name = signal.Signals(signum).name
    print(f"gradflow: interrupted by {name} while starting; nothing was computed", file=sys.stderr)
    sys.stderr.flush()
    os._exit(128 + signum)


def install() -> bool:
    """Install the start-up handlers if this process is the console script; whether it did."""
    script = os.path.basename(sys.argv[0]) if sys.argv else ""
    if script != "gradflow" or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return False
    try:
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, _interrupted)
    except ValueError:  # not the main thread: leave the handlers alone
        return False
    return True


install()
