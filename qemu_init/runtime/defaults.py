"""The defaults the runtime needs from the key table (qemu_init/keys.py), without importing it:
keys.py pulls in dataclasses and the value parsers, ~10 ms of every helper run. keys.py takes
these values from here, so each is still written once; tests/unit/test_defaults.py ties them."""

STOPDELAY = 40  # seconds: the rc-file's STOPDELAY and the host's MINSTOPDELAY
