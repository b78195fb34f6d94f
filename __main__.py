"""python -m latentlink: the `latentlink` command."""

import sys

from latentlink.codec.cli import main

if __name__ == "__main__":  # not when a worker process imports it
    sys.exit(main())
