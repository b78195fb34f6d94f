import sys

from latentlink.sender.cli import main

sys.exit(main())
