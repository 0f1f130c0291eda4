"""``python -m latentmcmc ...`` is the ``latentmcmc`` command (also under ``torchrun -m latentmcmc``)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
