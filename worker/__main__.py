"""`python -m worker`: see worker.cli."""

import sys

from worker.cli import main
from worker.malloc import keep_freed_blocks

if __name__ == "__main__":
    keep_freed_blocks()  # the worker's own process only: the benches' baselines keep glibc's defaults
    sys.exit(main())
