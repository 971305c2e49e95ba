"""``python -m microct`` is the ``microct`` command."""

import sys

from microct.cli import main

sys.exit(main())
