"""`python3 -m tests.simulation`: the long run, or the replay of one scenario (see longrun.py)."""

import sys

from tests.simulation.longrun import main

if __name__ == "__main__":
    sys.exit(main())
