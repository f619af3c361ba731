"""Runtime side of qemu-init: what the generated init scripts call at boot, shutdown and status.

Standard library only and import-light on purpose (a test checks it in a fresh interpreter):
this package must not import the generator side (jinja2, typer) nor asyncio.

    qmp      synchronous QMP client with a deadline on every call
    proc     pid files and the "is this process really our guest?" check
    stop     the stop state machine POWERDOWN -> QUIT -> TERM -> KILL -> GONE
    control  start / stop / status / monitor of one guest, under a per-guest lock
    helper   the ``qemu-init-helper`` command line the scripts call
"""
