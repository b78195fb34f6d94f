import sys

from latentlink.receiver.cli import main

sys.exit(main())
