"""`python -m unetlab` runs the command-line interface."""

import sys

from unetlab.cli import main

sys.exit(main())
