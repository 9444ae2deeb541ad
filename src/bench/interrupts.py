"""SIGINT, SIGTERM and SIGHUP as an exception the run can record: ``interrupted``, then exit 130, 143 or 129.

SLURM ends a job at its time limit with SIGTERM, whose default action kills the process on the spot; a user
presses Ctrl-C. Inside :func:`interruptible` both raise :class:`~bench.errors.Interrupted` in the main
thread, so the running job writes its ``metrics.json`` with status ``interrupted`` on the way out, and the
entry point writes what it still can (a sweep's partial report, ``reproduce.md``) under :func:`deferred`,
which holds further signals until the writing is done.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from types import FrameType
from typing import Any

import bench
from bench.errors import Interrupted

log = logging.getLogger(__name__)
#: SIGHUP too: a closed terminal or a dropped SSH session ended a sweep on the spot, its running job unrecorded
#: and no partial report
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: the last signal this process received under interruptible() or deferred(); None when none did
_received: int | None = None
#: a signal whose Interrupted may have been swallowed: raised in a destructor or an at-fork callback (a
#: DataLoader forking its workers), Python only prints it. check() raises it again at the next step.
_pending: int | None = None


def received() -> int | None:
    """The signal that interrupted this process, if one did (e.g. to explain a DataLoader worker's death)."""
    return _received


def reset() -> None:
    """Forget an earlier interruption: a new session starts."""
    global _received, _pending
    _received = _pending = None


def delivered() -> None:
    """The Interrupted reached its handler: nothing is pending any more."""
    global _pending
    _pending = None


def check() -> None:
    """Raise an interruption whose first Interrupted was swallowed; called between steps, where it is cheap."""
    global _pending
    if _pending is not None:
        signum, _pending = _pending, None
        raise Interrupted(signum)


@contextmanager
def interruptible() -> Iterator[None]:
    """Raise :class:`Interrupted` on SIGINT, SIGTERM or SIGHUP inside this block (main thread only; else a no-op)."""
    owner = os.getpid()
    set_aside: list[Any] = []  # torch's SIGCHLD handler, once a signal came

    def handler(signum: int, frame: FrameType | None) -> None:
        global _received, _pending
        if os.getpid() != owner:  # a forked DataLoader worker inherited this handler
            _in_a_worker(signum)
            return
        _received = _pending = signum
        if not set_aside:
            # The same signal ends the DataLoader's workers (Ctrl-C and SLURM signal the process group), and
            # each death raised torch's "worker is killed by signal" wherever the main process then was: in
            # the write of metrics.json, which was lost, the error in place of the interruption.
            set_aside.append(_worker_checks_off())
        raise Interrupted(signum)

    def unraisable(event: Any) -> None:
        if isinstance(event.exc_value, Interrupted):  # ours is pending: check() raises it again
            return
        if _received is not None and _teardown_after_a_signal(event.exc_value):
            # After a signal, objects it cut off fail in their destructors. That is teardown, not news: the
            # terminal keeps its one line, and a Hydra job's log file gets the traceback. Any other destructor
            # error is printed as Python always does.
            log.debug("After %s, in %r:", signal.Signals(_received).name, event.object,
                      exc_info=(event.exc_type, event.exc_value, event.exc_traceback))  # fmt: skip
            return
        default(event)

    default = sys.unraisablehook
    sys.unraisablehook = unraisable
    try:
        with _handlers(handler):
            yield
    finally:
        for previous in set_aside:
            _worker_checks_on(previous)
        if _received is None:  # after a signal, keep quiet through the exit too, where the rest is collected
            sys.unraisablehook = default


def _in_a_worker(signum: int) -> None:
    """A forked DataLoader worker's answer to the signal that also reached its main process (Ctrl-C and SLURM
    signal the whole process group), which records the run and stops the workers it no longer needs.

    SIGINT: end at once, silently and with status 0. bench's start-up handler, inherited, used to print
    "nothing was started" and exit 130, which the main process then reported as a failed worker; a worker
    that carried on instead could print a thread's traceback from its own shutdown (multiprocessing's
    resource sharer) under the run's one line. A worker holds no results: nothing is lost. SIGTERM: end as
    without bench, since it is also how the DataLoader stops a worker that does not stop when asked."""
    if signum == signal.SIGINT:
        os._exit(0)
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def quiet_worker(worker_id: int) -> None:
    """A DataLoader's ``worker_init_fn``: the worker's last-resort error hook logs (debug, the run's log file)
    instead of printing. Its one caller is multiprocessing's resource sharer, the worker's thread that hands
    each batch's tensors to the main process: when the main process is interrupted halfway through a
    hand-over, the thread's broken connection printed a traceback under the run's one line (seen once in a
    full test run). The dataset's own errors still reach the main process, which reports them as always."""

    def logged(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        log.debug("In DataLoader worker %d:", worker_id, exc_info=(kind, value, tb))

    sys.excepthook = logged


def _teardown_after_a_signal(error: BaseException | None) -> bool:
    """Whether a destructor's error after a signal is the signal's doing: an object it cut off half-built
    (a DataLoader iterator interrupted while forking its workers has no ``_shutdown`` when collected), or a
    DataLoader worker that the same signal ended, found by the iterator's shutdown."""
    if isinstance(error, AttributeError):
        return True
    return isinstance(error, RuntimeError) and str(error).startswith("DataLoader worker")


@contextmanager
def deferred(*, reraise: bool = True) -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP while the block writes what must be written; afterwards raise
    :class:`Interrupted` if one came (``reraise``), or drop it (the entry point is exiting anyway)."""
    held: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        global _received
        _received = signum
        held.append(signum)

    previous = None
    try:
        previous = _worker_checks_off()  # a worker that dies meanwhile must not cut the writing short either
        with _handlers(handler):
            yield
    finally:
        _worker_checks_on(previous)
    if held and reraise:
        raise Interrupted(held[0])


def _ignore_worker_deaths(signum: int, frame: FrameType | None) -> None:
    """SIGCHLD's handler while torch's is set aside: nothing. A Python handler, not SIG_DFL: a SIGCHLD already
    pending when the default took over was reported as "OSError: Signal 17 ignored due to race condition", a
    traceback under the run's one line (CPython handles a SIGINT or SIGTERM before a SIGCHLD that came with it)."""


def _worker_checks_off() -> Any:
    """Set aside SIGCHLD's Python handler, torch's DataLoader's (which raises in the main process, at whatever
    it is doing, when a worker ends by a signal), and return it. A worker that ended meanwhile is still found
    by the loader, if it is used again. Main thread only, elsewhere a no-op."""
    sigchld = getattr(signal, "SIGCHLD", None)  # POSIX only
    if sigchld is None or threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.getsignal(sigchld)
    if not callable(previous) or previous is _ignore_worker_deaths:
        return None
    signal.signal(sigchld, _ignore_worker_deaths)
    return previous


def _worker_checks_on(previous: Any) -> None:
    """Put back what :func:`_worker_checks_off` set aside."""
    if previous is not None:
        signal.signal(signal.SIGCHLD, previous)


@contextmanager
def entry_point() -> Iterator[None]:
    """What every command line shares: a fresh interruption state, signals as :class:`Interrupted`, and no
    ``--- Logging error ---`` tracebacks when a log file cannot be written (a full disk)."""
    logging.raiseExceptions = False
    reset()
    try:
        with interruptible():
            yield
    finally:
        bench._work_done()  # the start-up handlers, back now, must not say "nothing was started"


@contextmanager
def _handlers(handler: signal.Handlers | object) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # signals are delivered to the main thread; a helper thread cannot install handlers
        return
    previous = {s: signal.getsignal(s) for s in SIGNALS}
    for s in SIGNALS:
        if s == signal.SIGHUP and previous[s] == signal.SIG_IGN:
            continue  # nohup: the user asked for the command to outlive its terminal
        signal.signal(s, handler)  # type: ignore[arg-type]
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old if old is not None else signal.SIG_DFL)  # type: ignore[arg-type]


def descendants() -> list[int]:
    """The live processes descended from this one (Linux: read from /proc; elsewhere none), zombies left out."""
    parents: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()  # after the name, which may hold spaces
        except (OSError, IndexError):
            continue  # ended meanwhile
        if fields[0] != "Z":
            parents.setdefault(int(fields[1]), []).append(int(entry))
    found, queue = [], [os.getpid()]
    while queue:
        for child in parents.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def stop_descendants(signum: int, wait_s: float, grace_s: float = 3.0) -> list[int]:
    """Pass ``signum`` on to every process descended from this one (a sweep's jobs in processes of their own,
    when only this process was signalled: `kill PID`), and wait up to ``wait_s`` seconds for them to end, so
    that each records how it ended before the partial report reads it. Returns those still alive.

    They first get ``grace_s`` to end by themselves: Ctrl-C reaches the whole process group, and a second
    signal in the moment a job starts to record the first is one it need not get."""
    import time

    deadline = time.monotonic() + wait_s
    alive = _alive_until(time.monotonic() + min(grace_s, wait_s))
    for pid in alive:
        with suppress(OSError):  # ended meanwhile
            os.kill(pid, signum)
    return _alive_until(deadline)


def _alive_until(deadline: float) -> list[int]:
    """The descendants still alive once they have all ended, or at ``deadline``."""
    import time

    alive = descendants()
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = descendants()
    return alive


@contextmanager
def command(what: str) -> Iterator[None]:
    """A reading-and-writing command's failures as one line (``bench.report``, ``bench.compare``): bad input
    exit 2; a filesystem error while writing, or a bug, exit 1; SIGINT/SIGTERM 130/143. ``what`` completes
    "could not ..." (e.g. "write the report"). ``HYDRA_FULL_ERROR=1`` shows a bug's traceback instead."""
    from bench.errors import EXIT_RUN_FAILED, EXIT_USAGE, UsageError, exit_interrupted, fail, failure_reason

    with entry_point():
        try:
            yield
        except UsageError as err:
            fail(str(err), EXIT_USAGE)
        except OSError as err:  # found while writing: a full disk, a folder made read-only meanwhile
            fail(f"could not {what}: {failure_reason(err)}", EXIT_RUN_FAILED)
        except Interrupted as stop:
            exit_interrupted(stop, f"could not {what}; run the same command again")
        except Exception as err:  # a bug in bench: still one line (the runs on disk are untouched)
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            fail(f"could not {what}: {failure_reason(err)}", EXIT_RUN_FAILED)
