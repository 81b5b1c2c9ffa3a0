"""``python -m modfuse`` runs the ``modfuse`` command."""

import sys

from modfuse.cli.commands import main

sys.exit(main())
