"""A backup listed through a symbolic link is read only once what the link leads
to is seen to be a regular file. The writer of the backup directory can point the
link elsewhere between the listing and the read: before, encpipe-verify (as root)
then opened whatever it led to, a FIFO (whose writer woke) or a device (opening a
watchdog arms it, a tape rewinds); the type was checked after the open."""

import json
import os
import subprocess
import sys
import time

from test_backup_dir import ENV
from test_backup_dir_hostile import hours_ago, script, three_days


def linked_copy(tmp_path):
    """Backups of three days in `b`, and a link there to a copy of the newest: (b, the link's name)."""
    d = tmp_path / "b"
    d.mkdir()
    names = three_days(d)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "copy").write_bytes((d / names[-1]).read_bytes())
    linked = f"shop_{hours_ago(1)}.sql.enc"
    (d / linked).symlink_to(elsewhere / "copy")
    return d, linked


def test_a_link_pointed_at_a_fifo_after_the_listing_is_never_opened(tmp_path):
    d, linked = linked_copy(tmp_path)
    fifo, woke = tmp_path / "fifo", tmp_path / "woke"
    os.mkfifo(fifo)
    writer = subprocess.Popen([sys.executable, "-c", "import os, sys; os.open(sys.argv[1], os.O_WRONLY); "
                               "open(sys.argv[2], 'w').close()", fifo, woke])
    try:
        hook = f'[ "$1" = opening ] && [ "$3" = {linked} ] && ln -s {fifo} {d}/.s && mv -T {d}/.s {d}/{linked}; true'
        done = script("verify", d, env={**ENV, "ENCPIPE_TEST_HOOK": hook})
        assert os.readlink(d / linked) == str(fifo)  # the race was run
        time.sleep(0.2)
        assert not woke.exists() and writer.poll() is None  # nobody opened the FIFO to read
        assert done.returncode == 66 and done.stderr.decode().endswith(f"{linked} is not a regular file\n")
    finally:
        os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))  # lets the writer go
        writer.wait(timeout=10)


def test_a_link_to_a_regular_file_is_still_read(tmp_path):
    d, _ = linked_copy(tmp_path)
    done = script("verify", d, env=ENV)
    assert (done.returncode, done.stderr) == (0, b"")
    assert json.loads(done.stdout)["verified"] == 4
