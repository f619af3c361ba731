"""``python -m qemu_init.runtime``: the same as ``qemu-init-helper``."""

import sys

from .helper import main

sys.exit(main())
