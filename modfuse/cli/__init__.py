"""The ``modfuse`` command: ``run``, ``eval``, ``report`` and ``list``.

- :mod:`~modfuse.cli.commands`: the parser and each subcommand;
- :mod:`~modfuse.cli.checks`: run folders and resumes checked before anything is written;
- :mod:`~modfuse.cli.data`: a config's data built, checked and cached;
- :mod:`~modfuse.cli.evaluate`: a trained run swept and reported.
"""

from modfuse.cli.commands import main

__all__ = ["main"]
