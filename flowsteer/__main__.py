"""``python -m flowsteer`` is the ``flowsteer`` command."""

import sys

from flowsteer.cli import main

sys.exit(main())
