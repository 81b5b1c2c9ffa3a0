"""``python -m modfuse`` runs the ``modfuse`` command."""

import sys

from modfuse.cli import main

sys.exit(main())
