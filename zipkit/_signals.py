"""SIGINT, SIGTERM and SIGHUP stop a run the same way: what Ctrl-C, Slurm, systemd and a closed
terminal send.

In the main thread, :func:`stop_on_signals` turns each of them into :class:`Stopped` (a
``KeyboardInterrupt``) for the duration of a run, where its disposition is the default (or
zipkit's own), and restores the handlers after. A run in another thread (the widget form's)
cannot catch signals: :func:`cancel_on_signals` has the main thread cancel it, wait for its
clean-up, and then let the signal end the process as it would have.
"""

from __future__ import annotations

import atexit
import builtins
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator

__all__ = ["Stopped", "cancel_on_signals", "exit_code", "signal_name", "stop_on_signals"]

log = logging.getLogger("zipkit")

STOP_SIGNALS: tuple[int, ...] = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))
BACKGROUND_WAIT = 4.0  # seconds a signalled process waits for a background run's clean-up


class Stopped(KeyboardInterrupt):
    """A stop signal arrived; ``signum`` says which."""

    def __init__(self, signum: int = signal.SIGINT):
        self.signum = signum
        super().__init__(f"stopped by {signal_name(signum)}")


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def exit_code(signum: int) -> int:
    """The shell's exit status for a process ended by ``signum``: 130 SIGINT, 143 SIGTERM, 129 SIGHUP."""
    return 128 + signum


class _Handler:
    """Raises :class:`Stopped` on the first stop signal; later ones do not break the clean-up
    (the second says so, the third ends the process at once)."""

    def __init__(self) -> None:
        self.first: int | None = None
        self.more = 0
        self.deferred = False  # once the work is over: record a signal, do not break the clean-up
        self.pid = os.getpid()

    def defer(self) -> None:
        self.deferred = True

    def __call__(self, signum: int, frame: object) -> None:
        if os.getpid() != self.pid:  # a forked child (a pool worker before its initializer): the default
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        if self.first is None:
            self.first = signum
            if not self.deferred:
                raise Stopped(signum)
            return
        self.more += 1
        if self.more == 1:
            log.warning("%s: still stopping (workers, temp files); send it again to quit at once",
                        signal_name(signum))
            return
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def _ours_to_take(handler: object) -> bool:
    return (handler in (signal.SIG_DFL, signal.default_int_handler, _stop_background)
            or isinstance(handler, _Handler))


def _exit_at_once(code: int) -> Callable[[int, object], None]:
    def handler(signum: int, frame: object) -> None:
        os._exit(code)

    return handler


@contextlib.contextmanager
def stop_on_signals(*, exiting: bool = False) -> Iterator[_Handler]:
    """While the block runs (in the main thread), SIGINT, SIGTERM and SIGHUP raise :class:`Stopped`.

    A signal that the program ignores or handles itself is left alone, and every handler is
    given back afterwards. Nested uses share one handler: once a stop has begun, another
    signal does not interrupt the clean-up. ``exiting`` (a process that ends after the block,
    the CLI): once stopped, a later signal ends it at once with the first one's exit code,
    instead of a default handler's traceback or another signal's status.
    """
    if threading.current_thread() is not threading.main_thread():
        yield _Handler()  # never installed: nothing arrives here
        return
    current = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    outer = next((h for h in current.values() if isinstance(h, _Handler)), None)
    handler = outer or _Handler()
    deferred = handler.deferred
    replaced = {}
    for sig, old in current.items():
        if _ours_to_take(old) and old is not handler:
            replaced[sig] = old
            _before.setdefault(sig, old)
            signal.signal(sig, handler)
    try:
        yield handler
    finally:
        after = (_exit_at_once(exit_code(handler.first))
                 if exiting and outer is None and handler.first is not None else None)
        for sig, old in replaced.items():
            signal.signal(sig, after or old)
            if outer is None:
                _before.pop(sig, None)
        # an inner block's clean-up is over: the outer one (the CLI printing the report) stops
        # on the next signal again, instead of writing on into a reader that stalled
        handler.deferred = deferred


# The handlers zipkit's stop handler replaced, while it is installed. A process forked
# meanwhile (a caller's fork-context pool starting its workers during a run, a forkserver)
# gets them back: it is not the run, and zipkit's handler would turn SIGTERM, which
# concurrent.futures uses to stop a broken pool's workers, into an exception its worker may
# never see (a worker stuck in a lock would then never end).
_before: dict[int, object] = {}


def _restore_in_child() -> None:
    for sig, old in list(_before.items()):
        with contextlib.suppress(ValueError, OSError, TypeError):
            signal.signal(sig, old)  # type: ignore[arg-type]
    _before.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_restore_in_child)


_background: list[tuple[threading.Event, threading.Thread]] = []


def _stop_background(signum: int, frame: object) -> None:
    runs = [(c, t) for c, t in _background if t.is_alive()]
    _background.clear()
    if runs:
        log.warning("%s: cancelling %d run(s) before exiting", signal_name(signum), len(runs))
    for cancel, _ in runs:
        cancel.set()
    end = time.monotonic() + BACKGROUND_WAIT
    for _, t in runs:
        t.join(max(0.0, end - time.monotonic()))
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)  # the signal's own effect, now that the runs are cleaned up


def cancel_on_signals(cancel: threading.Event, thread: threading.Thread) -> None:
    """Call in the main thread for a run going on in ``thread``: SIGTERM or SIGHUP to this process
    then sets ``cancel``, waits (a few seconds) for the run's clean-up and ends the process as the
    signal would have. Signals that the program handles itself are left alone."""
    if threading.current_thread() is not threading.main_thread():
        return
    _background[:] = [(c, t) for c, t in _background if t.is_alive()] + [(cancel, thread)]
    for sig in STOP_SIGNALS:
        if sig != signal.SIGINT and signal.getsignal(sig) is signal.SIG_DFL:
            signal.signal(sig, _stop_background)


def end_like_signal_if_uncaught(error: BaseException, signum: int) -> None:
    """A script that does not catch ``error`` ends as if killed by ``signum`` (exit 143 for
    SIGTERM, not Python's 130 for any ``KeyboardInterrupt``), after its clean-up and traceback."""
    if signum == signal.SIGINT or sys.flags.interactive or hasattr(builtins, "get_ipython"):
        return

    def _at_exit() -> None:
        last = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
        if last is error:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    atexit.register(_at_exit)
