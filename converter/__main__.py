"""Entry point of ``python -m converter``."""

import sys

from converter.cli import main

sys.exit(main())
