"""``python -m capandex.cli`` is the ``capandex`` console script."""

import sys

from capandex.cli import main

sys.exit(main())
