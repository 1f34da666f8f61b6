"""``python -m handpose_lib ...`` is the ``handpose`` command."""

import sys

from .cli import main

sys.exit(main())
