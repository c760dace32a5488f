"""``python -m lkfirmware`` is the ``lkfirmware`` command."""

from lkfirmware.cli import main

raise SystemExit(main())
