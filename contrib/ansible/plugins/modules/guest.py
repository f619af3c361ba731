#!/usr/bin/python
# Copyright: qemu-init authors
# GNU General Public License v2.0+ (see https://www.gnu.org/licenses/old-licenses/gpl-2.0.txt)
"""Ansible module: one qemu-init guest on the managed host, driven through the qemu-init command."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: guest
short_description: Manage one qemu-init guest (files, registration, scripts, autostart, state)
version_added: "1.0.0"
description:
  - Writes the guest's rc-file C(NAME-qemud.rc) and cfg-file C(NAME-qemu.cfg) from structured
    variables, registers the guest, installs the init scripts (C(qemu-init install)), sets
    autostart and starts or stops the guest.
  - New files are written into a private temporary folder beside them, validated with
    C(qemu-init check), then renamed into place; a bad value fails the task with qemu-init's
    own one-line message (file, line, key, what is wrong) and leaves the host as it was.
  - Everything is read from C(qemu-init list --json), C(qemu-init status --json) and
    C(qemu-init check --json) on the managed host. Reports C(changed) only when something changed.
options:
  name:
    description: The guest's name (the rc-file's C(NAME)).
    type: str
    required: true
  folder:
    description:
      - The guest's folder, created root-owned (mode 0755) when missing. qemu-init trusts only
        root-owned files and folders that are not group- or other-writable, up to C(/).
      - Required unless O(state=absent).
    type: path
  rc:
    description:
      - The rc-file's keys and values (C(NAME) is added from O(name) unless given).
      - Written one C(KEY=value) line each, in the given order.
    type: dict
    default: {}
  cfg:
    description: The cfg-file's lines (device shorthands such as C(DSK1=…), or raw QEMU options).
    type: list
    elements: str
    default: []
  autostart:
    description: Start the guest at host boot (C(qemu-init autostart on|off)); unchanged when omitted.
    type: bool
  state:
    description:
      - C(present) - files written, registered, scripts installed.
      - C(started) / C(stopped) - as C(present), and the guest running or not.
      - C(absent) - stopped, unregistered, its scripts removed (C(qemu-init install)) and its files deleted.
    type: str
    choices: [present, started, stopped, absent]
    default: started
  restart:
    description: Restart a running guest when its files or its script changed in this task.
    type: bool
    default: false
  install:
    description: Run C(qemu-init install) when the installed scripts differ from what it would write.
    type: bool
    default: true
  executable:
    description: The qemu-init command on the managed host.
    type: str
    default: qemu-init
author:
  - qemu-init authors
"""

EXAMPLES = r"""
- name: A small guest that starts at boot
  qemu_init.qemu_init.guest:
    name: web1
    folder: /srv/vms/web1
    rc:
      TGTARCH: qemu-system-x86_64
      RAM: 1G
      STOPDELAY: 60
    cfg:
      - DSK1=/srv/vms/web1/disk.qcow2
    autostart: true
    state: started
    restart: true
"""

RETURN = r"""
guest:
  description: The guest as C(qemu-init status --json) reports it after the task (absent - null).
  returned: always
  type: dict
installed:
  description: Whether C(qemu-init install) ran (or would run, in check mode).
  returned: always
  type: bool
restarted:
  description: Whether the guest was restarted (or would be, in check mode).
  returned: always
  type: bool
"""

import filecmp
import json
import os
import re
import shutil
import tempfile

from ansible.module_utils.basic import AnsibleModule

_PLAIN = re.compile(r"^[^\s'\"#]*$")


def rc_text(name, rc):
    """The rc-file for ``rc`` (a dict): NAME first unless given, one KEY=value line each."""
    items = list(rc.items())
    if not any(key == "NAME" for key, _ in items):
        items.insert(0, ("NAME", name))
    lines = []
    for key, value in items:
        if isinstance(value, bool):
            value = "yes" if value else "no"
        value = str(value)
        if not _PLAIN.match(value):  # qemu-init's rc syntax: '…' or "…" quote literally
            value = ("'%s'" if "'" not in value else '"%s"') % value
        lines.append("%s=%s" % (key, value))
    return "\n".join(lines) + "\n"


def cfg_text(cfg):
    return "".join(line + "\n" for line in cfg)


def read(path):
    try:
        with open(path) as handle:
            return handle.read()
    except (IOError, OSError):
        return None


class Guest(object):
    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.name = self.params["name"]
        self.exe = module.get_bin_path(self.params["executable"], required=True)
        self.changed = False
        self.diffs = []
        self.installed = self.restarted = False
        self.registered = False

    # --- qemu-init ---------------------------------------------------------------------------
    def qi(self, *args, **kw):
        rc, out, err = self.module.run_command([self.exe] + list(args), environ_update={"LANG": "C.UTF-8"})
        if kw.get("check", True) and rc != 0:
            self.fail(err.strip() or out.strip() or "qemu-init %s exited %d" % (" ".join(args), rc))
        return rc, out, err

    def qi_json(self, *args):
        rc, out, err = self.qi(*args, check=False)
        try:
            return rc, json.loads(out)
        except ValueError:
            self.fail(err.strip() or "qemu-init %s: no JSON output (exit %d)" % (" ".join(args), rc))

    def fail(self, msg, **extra):
        self.module.fail_json(msg=msg, changed=self.changed, diff=self.diffs, **extra)

    def entry(self):
        _, guests = self.qi_json("list", "--json")
        for guest in guests:
            if guest["name"].lower() == self.name.lower():
                return guest
        return None

    def status(self):
        return self.qi_json("status", self.name, "--json")[1]

    # --- files -------------------------------------------------------------------------------
    def paths(self):
        folder = self.params["folder"]
        base = self.name.lower()
        return (os.path.join(folder, base + "-qemud.rc"), os.path.join(folder, base + "-qemu.cfg"))

    def write_files(self):
        """Validate the new files in a private folder beside the old ones, then rename them in."""
        folder = self.params["folder"]
        rcpath, cfgpath = self.paths()
        wanted = [(rcpath, rc_text(self.name, self.params["rc"])), (cfgpath, cfg_text(self.params["cfg"]))]
        todo = []
        for path, text in wanted:
            before = read(path)
            if before != text:
                todo.append((path, text))
                self.diffs.append({"before_header": path, "after_header": path,
                                   "before": before or "", "after": text})
        if not todo:
            return False
        if not os.path.isdir(folder):
            if self.module.check_mode:
                self.changed = True
                return True  # nothing to check against yet; the real run validates
            os.makedirs(folder, 0o755)
            os.chmod(folder, 0o755)
        tmp = tempfile.mkdtemp(prefix=".qemu-init-ansible.", dir=folder)  # 0700, root's: trusted
        try:
            for path, text in wanted:  # both files, so the check reads the rc-file with its cfg-file
                with open(os.path.join(tmp, os.path.basename(path)), "w") as handle:
                    handle.write(text)
                os.chmod(os.path.join(tmp, os.path.basename(path)), 0o644)
            trial = os.path.join(tmp, os.path.basename(rcpath))
            _, result = self.qi_json("check", trial, "--json")
            own = os.path.join(os.path.abspath(folder), os.path.basename(rcpath))
            # The trial copy of a registered guest clashes with the guest itself (its name is
            # registered from the real rc-file): not a problem of the new files.
            errors = [p for p in result.get("problems", []) if p.get("level") == "error"
                      and not (p.get("key") == "NAME" and self.registered and own in p.get("message", ""))]
            if errors:
                lines = []
                for p in errors:
                    path = os.path.join(folder, os.path.basename(p["path"])) if p["path"].startswith(tmp) else p["path"]
                    where = "%s:%s" % (path, p["line"]) if p.get("line") else path
                    lines.append("%s: %s%s" % (where, p["key"] + ": " if p.get("key") else "", p["message"]))
                self.fail("\n".join(lines), problems=errors)
            if not self.module.check_mode:
                for path, _ in todo:
                    os.rename(os.path.join(tmp, os.path.basename(path)), path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self.changed = True
        return True

    # --- scripts -----------------------------------------------------------------------------
    def scripts_differ(self):
        """Whether ``qemu-init install`` would write anything different from what is installed."""
        tmp = tempfile.mkdtemp(prefix="qemu-init-ansible.")
        try:
            self.qi("install", "--destdir", tmp)
            for top, _, files in os.walk(tmp):
                for name in files:
                    new = os.path.join(top, name)
                    old = "/" + os.path.relpath(new, tmp)
                    if not os.path.exists(old) or not filecmp.cmp(new, old, shallow=False):
                        return True
                    if os.stat(new).st_mode != os.stat(old).st_mode:
                        return True
            return False
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def install(self):
        self.installed = True
        self.changed = True
        if self.module.check_mode:
            return
        self.qi("install")
        if os.path.isdir("/run/systemd/system"):  # systemd reads changed units on a reload only
            self.module.run_command(["systemctl", "daemon-reload"], check_rc=True)

    # --- the task ----------------------------------------------------------------------------
    def absent(self):
        entry = self.entry()
        if entry is not None:
            self.changed = True
            if not self.module.check_mode:
                if self.status().get("pid"):
                    self.qi("stop", self.name)
                self.qi("unregister", self.name)
                if self.params["install"]:
                    self.install()
            folder = entry["folder"]
        else:
            folder = self.params["folder"]
        if folder:
            base = self.name.lower()
            for path in (os.path.join(folder, base + "-qemud.rc"), os.path.join(folder, base + "-qemu.cfg")):
                before = read(path)
                if before is not None:
                    self.changed = True
                    self.diffs.append({"before_header": path, "after_header": path, "before": before, "after": ""})
                    if not self.module.check_mode:
                        os.unlink(path)
        self.module.exit_json(changed=self.changed, diff=self.diffs, guest=None,
                              installed=self.installed, restarted=False)

    def present(self):
        p = self.params
        if not p["folder"]:
            self.fail("folder is required unless state=absent")
        entry = self.entry()
        folder = os.path.abspath(p["folder"])
        if entry is not None and entry["folder"] != folder:
            self.fail("%s: registered in %s, not %s (state=absent first to move it)" % (self.name, entry["folder"], folder))
        self.registered = entry is not None
        files_changed = self.write_files()
        running = entry is not None and bool(entry.get("pid"))
        if self.module.check_mode and (files_changed or entry is None):
            # what the real run would do next depends on the files it would have written
            self.changed = True
            self.installed = p["install"]
            self.restarted = running and p["restart"] and files_changed
            self.done(entry)
        if entry is None:
            self.qi("register", self.paths()[0])
            self.changed = True
            entry = self.entry()
        if p["autostart"] is not None and entry["autostart"] != p["autostart"]:
            self.changed = True
            if not self.module.check_mode:
                self.qi("autostart", "on" if p["autostart"] else "off", self.name)
        script_changed = False
        if p["install"] and self.scripts_differ():
            script_changed = True
            self.install()
        if p["state"] == "started" and not running:
            self.changed = True
            if not self.module.check_mode:
                self.qi("start", self.name)
        elif p["state"] == "started" and p["restart"] and (files_changed or script_changed):
            self.changed = self.restarted = True
            if not self.module.check_mode:
                self.qi("restart", self.name)
        elif p["state"] == "stopped" and running:
            self.changed = True
            if not self.module.check_mode:
                self.qi("stop", self.name)
        self.done(entry)

    def done(self, entry):
        """Exit with the guest as qemu-init reports it now (the list's entry when nothing changed)."""
        if entry is None:
            guest = None
        elif self.changed and not self.module.check_mode:
            guest = self.status()
        else:
            guest = entry
        self.module.exit_json(changed=self.changed, diff=self.diffs, guest=guest,
                              installed=self.installed, restarted=self.restarted)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            folder=dict(type="path"),
            rc=dict(type="dict", default={}),
            cfg=dict(type="list", elements="str", default=[]),
            autostart=dict(type="bool"),
            state=dict(type="str", default="started", choices=["present", "started", "stopped", "absent"]),
            restart=dict(type="bool", default=False),
            install=dict(type="bool", default=True),
            executable=dict(type="str", default="qemu-init"),
        ),
        supports_check_mode=True,
    )
    guest = Guest(module)
    if module.params["state"] == "absent":
        guest.absent()
    else:
        guest.present()


if __name__ == "__main__":
    main()
