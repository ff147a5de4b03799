"""``python -m edge.web``: the same as ``smartbin web``, usable without the main CLI."""

import sys

from edge.web.cli import main

sys.exit(main())
