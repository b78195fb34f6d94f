"""python -m latentlink: the `latentlink` command."""

import sys

from latentlink.codec.cli import main

sys.exit(main())
