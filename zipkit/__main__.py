"""``python -m zipkit …`` and IPython's ``%run -m zipkit …``.

Under IPython (``%run``) the run's report is left in the session as ``report`` and the exit
code as ``exit_code``, instead of leaving the interpreter.
"""

import builtins
import sys

from zipkit._cli import run_cli

report, exit_code = run_cli()

if not hasattr(builtins, "get_ipython"):
    sys.exit(exit_code)
