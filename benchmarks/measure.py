"""Run one command and print its wall time and the peak RSS of its whole process tree (JSON).

ru_maxrss of RUSAGE_CHILDREN covers every descendant that was waited for, so measuring in a
fresh wrapper process isolates one command from the ones measured before it.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time


def main() -> None:
    start = time.perf_counter()
    proc = subprocess.run(sys.argv[1:], check=False)
    wall = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    print(json.dumps({"returncode": proc.returncode, "wall_s": wall, "peak_mib": peak_kib / 1024}))


if __name__ == "__main__":
    main()
