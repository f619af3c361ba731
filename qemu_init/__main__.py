"""``python -m qemu_init`` is the ``qemu-init`` command."""

from .cli import main

main()
