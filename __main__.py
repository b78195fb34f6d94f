"""python -m latentlink: the `latentlink` command."""

import sys

from latentlink.shared.launch import latentlink

if __name__ == "__main__":  # not when a worker process imports it
    sys.exit(latentlink())
