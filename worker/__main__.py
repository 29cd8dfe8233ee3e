"""`python -m worker`: see worker.cli."""

import sys

from worker import cli
from worker.malloc import keep_freed_blocks


def main() -> int:
    """`python -m worker` and `unitscope-worker`: the worker's allocator settings, then the CLI."""
    keep_freed_blocks()  # the worker's own process only: tests call cli.main in theirs, benches' baselines too
    return cli.main()


if __name__ == "__main__":
    sys.exit(main())
