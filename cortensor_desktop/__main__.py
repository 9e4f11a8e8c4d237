"""`python -m cortensor_desktop` does what the `cortensor-desktop` console script does."""

import multiprocessing
import sys

from cortensor_desktop.cli.main import main

if __name__ == "__main__":
    # Frozen builds re-launch themselves for multiprocessing children (py-cpuinfo, workers).
    multiprocessing.freeze_support()
    sys.exit(main())
