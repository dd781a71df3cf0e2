"""A symbolic link in a backup location is listed and read (never counted nor
removed): one that led to a regular file when it was listed, then was pointed at
a terminal before it was read, was opened without O_NOCTTY. A run that leads its
session and has no controlling terminal (a systemd service's ExecStart=
encpipe-prune, encpipe-check under some schedulers) then took the planter's
terminal as its own, whose hang-up (the planter closing it) is a SIGHUP to the
run. It is now opened with O_NOCTTY, then refused as not a regular file
(README, "Listing, pruning and verifying backups")."""

import os

from encpipe.backup.storage import Local
from test_backup_dir import make_valid


def in_a_session_of_its_own(refused):
    """The exit code of a child that leads a session of its own with no controlling
    terminal (as a service does) and calls `refused()`: 0 when that refused to read
    and the child still has no controlling terminal, 1 when the terminal opened
    became its own, 4 when it was read as a file, 3 on anything else."""
    pid = os.fork()
    if pid == 0:
        code = 3
        try:
            os.setsid()
            if not refused():
                code = 4
            else:
                try:
                    os.close(os.open("/dev/tty", os.O_RDONLY))
                    code = 1
                except OSError:
                    code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def a_terminal():
    """(the master side of a new pseudo-terminal, kept open; the path of its other side)."""
    master, slave = os.openpty()
    terminal = os.ttyname(slave)
    os.close(slave)
    return master, terminal


def test_a_link_swapped_to_a_terminal_never_becomes_the_runs_controlling_terminal(tmp_path):
    master, terminal = a_terminal()
    make_valid(tmp_path, "shop_20240101T000000Z.sql.enc")
    os.symlink("shop_20240101T000000Z.sql.enc", tmp_path / "shop_20240102T000000Z.sql.enc")
    store = Local(str(tmp_path))
    [link] = [item for item in store.list() if item.link]
    os.unlink(tmp_path / link.name)
    os.symlink(terminal, tmp_path / link.name)  # after the listing, before the read

    def refused():
        try:
            store.open(link)
            return False
        except OSError as e:
            return str(e) == f"{link.name} is not a regular file"

    try:
        assert in_a_session_of_its_own(refused) == 0
    finally:
        os.close(master)


def test_a_restore_file_linked_to_a_terminal_never_becomes_the_restores_controlling_terminal(tmp_path):
    """encpipe-restore follows a link (an operator's `latest` link to a run's dump):
    one a writer of its directory points at a terminal is refused (66) and, for a
    restore that leads its session (a systemd unit), never its controlling terminal."""
    from encpipe.pgcli import Failure
    from encpipe.pgfetch import open_regular

    master, terminal = a_terminal()
    os.symlink(terminal, tmp_path / "latest.dump.enc")

    def refused():
        try:
            open_regular(str(tmp_path / "latest.dump.enc"), "FILE", "nothing was changed")
            return False
        except Failure as e:
            return e.status == 66 and str(e) == "cannot read FILE: not a regular file; nothing was changed"

    try:
        assert in_a_session_of_its_own(refused) == 0
    finally:
        os.close(master)
