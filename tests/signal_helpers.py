"""Start test subjects with the signal dispositions a terminal gives, however the suite was launched.

Under ``nohup … &`` or a CI wrapper, SIGINT (and maybe SIGHUP) is ignored, and an ignored signal
stays ignored across ``exec``: a subject started from there would never see the Ctrl-C a test
sends. :func:`default_signals` (a ``preexec_fn``) resets SIGINT, SIGTERM and SIGHUP to their
defaults and unblocks every signal in the child before it runs the subject.
"""

from __future__ import annotations

import signal

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def default_signals() -> None:
    """``preexec_fn``: default dispositions for SIGINT, SIGTERM, SIGHUP; no signal blocked."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def ignoring_sigint() -> None:
    """``preexec_fn``: the child ignores SIGINT, as under ``nohup … &``."""
    default_signals()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
