"""Run every benchmark in this folder (``make bench``); pass ``--quick`` for a short run.

Each ``bench_*.py`` is a standalone script printing a markdown table; results, with date and
machine, are copied into BENCHMARKS.md by hand after a run on a quiet machine.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from datetime import date
from pathlib import Path

HERE = Path(__file__).parent


def main() -> int:
    extra = sys.argv[1:]
    print(f"# adlens benchmarks — {date.today()} — {platform.machine()} {platform.processor() or ''}, "
          f"{__import__('os').cpu_count()} CPUs, Python {platform.python_version()}\n")
    failed = []
    for script in sorted(HERE.glob("bench_*.py")):
        print(f"\n## {script.stem}\n", flush=True)
        rc = subprocess.call([sys.executable, str(script), *extra])
        if rc:
            failed.append(script.name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
