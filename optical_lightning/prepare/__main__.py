"""``python -m optical_lightning.prepare``: see :mod:`optical_lightning.prepare.cli`."""

from optical_lightning.prepare.cli import main

raise SystemExit(main())
