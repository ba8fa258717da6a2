#!/usr/bin/python3
# Runs a command under the system-call filter systemd/camclassd.service declares, the way systemd
# applies it (no systemd needed): the first SystemCallFilter= line is an allow list, later lines
# starting with ~ remove from it, later plain lines add to it; everything else fails with
# SystemCallErrorNumber= (EPERM). Groups (@name) are expanded with `systemd-analyze syscall-filter`.
#   Tests/systemd/unit-syscall-filter.py UNIT_FILE COMMAND [ARG...]
# Needs python3-seccomp (Debian package).
import errno, os, subprocess, sys

import seccomp


def expand(name, seen):
    if not name.startswith("@"):
        return {name}
    if name in seen:
        return set()
    seen.add(name)
    out = subprocess.run(["systemd-analyze", "syscall-filter", name], capture_output=True, text=True, check=True).stdout
    calls = set()
    for line in out.splitlines()[1:]:
        word = line.strip()
        if word and not word.startswith("#"):
            calls |= expand(word, seen)
    return calls


def unit_filter(unit):
    allowed = None
    for line in open(unit, encoding="utf-8"):
        line = line.strip()
        if not line.startswith("SystemCallFilter="):
            continue
        value = line.split("=", 1)[1].strip()
        deny = value.startswith("~")
        names = set()
        for word in value.lstrip("~").split():
            names |= expand(word, set())
        if allowed is None:
            if deny:
                sys.exit("unit-syscall-filter: a deny-list-first filter is not emulated")
            allowed = names
        elif deny:
            allowed -= names
        else:
            allowed |= names
    if allowed is None:
        sys.exit("unit-syscall-filter: %s has no SystemCallFilter=" % unit)
    return allowed


def main():
    unit, argv = sys.argv[1], sys.argv[2:]
    allowed = unit_filter(unit)
    f = seccomp.SyscallFilter(defaction=seccomp.ERRNO(errno.EPERM))
    count = 0
    for name in sorted(allowed):
        try:
            f.add_rule(seccomp.ALLOW, name)
            count += 1
        except (RuntimeError, ValueError):
            pass  # not a system call on this architecture
    sys.stderr.write("unit-syscall-filter: %d system calls allowed\n" % count)
    f.load()
    os.execv(argv[0], argv)


main()
