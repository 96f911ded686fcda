"""Run zipkit's library call in its own process, for faults that need one (SIGINT, a hung read).

Usage: ``python run_library.py SPEC.json``. SPEC holds ``source``, ``extensions``, ``output``,
``plan`` (keyword arguments of ``zipkit.plan``), ``run`` (of ``zipkit.run_plan``), ``fifo``
(names of source files to replace by FIFOs after planning) and ``result`` (where to write the
outcome as JSON: ``interrupted``, ``records``, ``notes``, ``seconds``).

Prints ``PLANNED`` once the plan is made (and the FIFOs are in place). Exit status: the
``RunInterrupted``'s ``exit_code`` (130 SIGINT, 143 SIGTERM, 129 SIGHUP) when the run was
stopped, else 0 all ok, 1 some stems failed. With ``uncaught`` in SPEC the script does not catch
``RunInterrupted`` (as a careless script would): it ends as the signal's default would.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import zipkit


def main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    p = zipkit.plan(spec["source"], spec["extensions"], spec.get("output"), **spec.get("plan", {}))
    for name in spec.get("fifo", []):
        path = Path(spec["source"]) / name
        path.unlink()
        os.mkfifo(path)
    print("PLANNED", flush=True)
    t0 = time.monotonic()
    if spec.get("uncaught"):
        zipkit.run_plan(p, **spec.get("run", {}))
        return 0
    try:
        report = zipkit.run_plan(p, **spec.get("run", {}))
        interrupted = False
    except zipkit.RunInterrupted as e:
        report = e.report
        interrupted = e.exit_code
    outcome = {"interrupted": interrupted, "records": report.to_records(), "notes": list(report.notes),
               "seconds": time.monotonic() - t0}
    Path(spec["result"]).write_text(json.dumps(outcome))
    if interrupted:
        return interrupted
    return 0 if report.success else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
