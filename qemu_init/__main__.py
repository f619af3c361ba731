"""``python -m qemu_init`` is the ``qemu-init`` command."""

from .fastcli import main

main()
