"""``python -m zipkit …`` and IPython's ``%run -m zipkit …``.

Under IPython (``%run``) the run's report is left in the session as ``report`` and the exit
code as ``exit_code``, instead of leaving the interpreter; Ctrl-C (130) ends only the run. A
SIGTERM or SIGHUP (143, 129) asked for the process to end: once the run has stopped and its
report is printed, the session ends too, with that exit status.
"""

import builtins
import sys

from zipkit._cli import exit_now, run_cli

_ipython = hasattr(builtins, "get_ipython")
report, exit_code = run_cli(exiting=not _ipython)

if exit_code in (129, 143) or (exit_code == 130 and not _ipython):
    exit_now(exit_code)
if not _ipython:
    sys.exit(exit_code)
