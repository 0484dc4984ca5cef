"""``python -m hornbeam``: the same as the ``hornbeam`` command."""

from hornbeam.cli import main

raise SystemExit(main())
