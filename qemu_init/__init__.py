"""qemu-init: QEMU guests described by tiny text files, started and stopped by plain init scripts.

Kept import-free on purpose: the runtime helper imports this package at every boot and status.
"""

__version__ = "0.1.0"
