"""``python -m kernelyard``: the same as the ``kernelyard`` command."""

import sys

from kernelyard.cli import main

sys.exit(main())
