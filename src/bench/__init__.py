"""bench: a Hydra-configured PyTorch training benchmark."""

import os
import signal
import sys
import threading
import time

#: when this process first imported bench, which a command does first: its clock, imports included
#: (benchmarks/harness.py's --seconds)
STARTED = time.monotonic()

#: folders whose programs are bench's commands: ``python -m bench[.report ...]`` and ``benchmarks/*.py``
_COMMAND_FOLDERS = ("bench", "benchmarks")


def _quiet_start() -> None:
    """A command's first second is imports (torch, pandas, Hydra): a Ctrl-C, SIGTERM or SIGHUP there would print
    a traceback from deep inside them. Until the command installs its own handlers (bench.interrupts), each
    ends it with one line and 130, 143 or 129: nothing was started, so nothing is lost. A signal the shell has
    set to be ignored (a background job, nohup) stays ignored."""

    def handler(signum: int, frame: object) -> None:
        when = "after its work, while exiting" if _done else "nothing was started"
        try:
            sys.stderr.write(f"bench: interrupted by {signal.Signals(signum).name}: {when}\n")
            sys.stderr.flush()
        except OSError:  # SIGHUP: the terminal is gone
            pass
        os._exit(128 + signum)  # no finalizers of half-imported modules, which could print their own errors

    defaults = {
        signal.SIGINT: signal.default_int_handler,
        signal.SIGTERM: signal.SIG_DFL,
        signal.SIGHUP: signal.SIG_DFL,
    }
    for signum, default in defaults.items():
        if signal.getsignal(signum) is default:
            signal.signal(signum, handler)


_done = False  # set when the command's own handlers end: its work is over and written


def _work_done() -> None:
    """Called by bench.interrupts when a command's handlers end: a signal in the exit is not 'nothing was
    started'."""
    global _done
    _done = True


def _is_command() -> bool:
    """Whether this process is one of bench's commands, starting: ``python -m bench...`` (Python sets argv[0] to
    "-m" while it imports the package to find the module) or a script in benchmarks/."""
    first = sys.argv[0] if sys.argv else ""
    if first == "-m":
        return True
    return bool(first) and os.path.basename(os.path.dirname(os.path.abspath(first))) in _COMMAND_FOLDERS


if _is_command() and threading.current_thread() is threading.main_thread():
    _quiet_start()
