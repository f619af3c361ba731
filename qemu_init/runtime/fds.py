"""The descriptor numbers QEMU's command line names (cmdline.py writes them, the helper fills them
in launch.py): the control socket, the monitor socket, then the taps in the order the script lists
them; and the sandbox QEMU runs in.

A module of their own, so that building a guest's command line (every `status`, `stop`) does not
import launch.py's sockets and select.
"""

QMP_FD = 3
HMP_FD = 4
TAP_FD = 5
SANDBOX = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"
