"""The globals file beside FILE, which a writer of the backup directory can replace
by a symbolic link, is never opened unless it is a regular file.

encpipe-restore opened it with os.open (following links, O_NONBLOCK), then looked
at what it had opened. A link planted under the globals file's name and pointed
at a FIFO outside the directory woke the FIFO's writer; at a device, opened it
(a watchdog is armed, a tape rewinds), as encpipe-list, verify, prune and check
no longer do (tests/test_link_opened_as_listed.py). What the link leads to must
be seen to be a regular file before it is opened (O_PATH first), as there.
"""

import os
import subprocess
import sys
import time

from test_backup_restore import backup, ensure_small, restore

TARGET = "globals_link_target"


def test_a_globals_file_linked_to_a_fifo_outside_is_never_opened(pg, tools, key_file, tmp_path):
    db = ensure_small(pg, "globals_link_source")
    path, line = backup(pg, tools, str(tmp_path / "b"), db, "--key-file", key_file)
    globals_path = os.path.join(os.path.dirname(path), line["globals"])
    fifo, woke = tmp_path / "outside" / "fifo", tmp_path / "woke"
    fifo.parent.mkdir()
    os.mkfifo(fifo)
    writer = subprocess.Popen([sys.executable, "-c", "import os, sys; os.open(sys.argv[1], os.O_WRONLY); "
                               "open(sys.argv[2], 'w').close()", fifo, woke])
    os.unlink(globals_path)
    os.symlink(fifo, globals_path)  # planted by the writer of the directory
    pg.dropdb(TARGET)
    try:
        proc = restore(pg, tools, path, TARGET, "--key-file", key_file)
        time.sleep(0.2)
        assert not woke.exists() and writer.poll() is None  # nobody opened the FIFO to read
        assert (proc.returncode, proc.stdout) == (66, b""), proc.stderr.decode()
        assert TARGET not in pg.psql("SELECT datname FROM pg_database").split()
    finally:
        os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))  # lets the writer go
        writer.wait(timeout=10)
