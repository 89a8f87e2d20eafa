"""``python -m kernelyard.kernel -f CONNECTION_FILE``."""

import sys

from kernelyard.kernel.app import main

sys.exit(main())
