"""``python -m zipkit …`` and IPython's ``%run -m zipkit …``.

Under IPython (``%run``) the run's report is left in the session as ``report`` and the exit
code as ``exit_code``, instead of leaving the interpreter; Ctrl-C (130) ends only the run. A
SIGTERM or SIGHUP (143, 129) asked for the process to end: once the run has stopped and its
report is printed, the session ends too, with that exit status.
"""

import builtins
import os
import sys

from zipkit._cli import run_cli

report, exit_code = run_cli()

if not hasattr(builtins, "get_ipython"):
    sys.exit(exit_code)
if exit_code in (129, 143):
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(exit_code)
