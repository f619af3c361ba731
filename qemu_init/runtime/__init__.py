"""Runtime side of qemu-init: what the generated init scripts call at boot, shutdown and status.

Standard library only and import-light on purpose (a test checks it in a fresh interpreter):
this package must not import the generator side (jinja2, typer) nor asyncio.

    qmp         synchronous QMP client with a deadline on every call
    proc        pid files and the "is this process really our guest?" check
    stop        the stop state machine POWERDOWN -> QUIT -> TERM -> KILL -> GONE
    control     start and stop of one guest, under a per-guest lock (lock), pause/resume/reset
    launch      QEMU started in its sandbox, handed its sockets and taps
    hooks       PRECMD/POSTCMD and the check of the files a script was made from
    guestlog    the guest log (and syslog)
    status      what a guest is doing, as a record, and its one line
    monitor     one human monitor command, or a session
    helperargs  the helper's options, defined once (the scripts' calls come from them too)
    defaults    the key table's defaults the runtime needs (keys.py reads them from here)
    helper      the ``qemu-init-helper`` command line the scripts call
"""
