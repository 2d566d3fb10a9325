"""Every script under benchmarks/ loads: its imports (of the package and of sibling benchmarks, which share helpers
such as compare_strategies.run_cached) still resolve after the code they use is refactored. The benchmarks are run
by hand, not by the suite, so without this a renamed helper breaks them silently."""

from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = os.path.join(ROOT, "benchmarks")

# One process for all scripts: the heavy imports (torch, diffusers) are paid once.
_LOADER = """
import json, runpy, sys, traceback
failures = {}
for path in sys.argv[1:]:
    try:
        runpy.run_path(path, run_name="benchmark_import_check")
    except BaseException as err:  # SystemExit too: a script must not run at import
        failures[path] = "".join(traceback.format_exception_only(type(err), err)).strip()
print(json.dumps(failures))
"""


def test_every_benchmark_script_loads():
    scripts = sorted(os.path.join(BENCHMARKS, f) for f in os.listdir(BENCHMARKS) if f.endswith(".py"))
    assert len(scripts) >= 10
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([BENCHMARKS, ROOT]), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", _LOADER, *scripts], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    failures = json.loads(result.stdout.strip().splitlines()[-1])
    assert failures == {}, failures
