"""``python -m modfuse.data.synthetic``: write a synthetic world and/or a preview of it."""

from modfuse.data.synthetic.preview import main

main()
