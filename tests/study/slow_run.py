"""``modfuse`` with every atomic file publication slowed down (``os.replace`` sleeps after
it runs), so that a test can kill a small study between any two of its writes."""

import os
import sys
import time

from modfuse.cli import main

_replace = os.replace


def slow_replace(src, dst, *args, **kwargs):
    _replace(src, dst, *args, **kwargs)
    time.sleep(0.05)


os.replace = slow_replace

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
