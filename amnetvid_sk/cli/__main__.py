"""``python -m amnetvid_sk.cli``: the same as the ``amnetvid`` command."""

import sys

from . import main

sys.exit(main())
