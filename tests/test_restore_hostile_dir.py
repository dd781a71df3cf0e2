"""encpipe-restore against a user who can write the backup directory: a FIFO
planted as the globals file of FILE's run, FILE itself swapped for a FIFO or a
link between restore's check and encpipe's read. A restore never hangs, and
reads only the very files it checked. Real scripts, a real cluster.
"""

import os
import shlex
import sys

from test_backup_restore import (
    MARKERS,
    RESTORE,
    backup,
    ensure_small,
    run,
    script_env,
)

TARGET = "hostile_dir_target"


def restore(pg, tools, path, db, *options, env_extra=None):
    """encpipe-restore, given a minute: a hang is the failure."""
    return run([RESTORE, *options, path, db], script_env(pg, tools, **(env_extra or {})), timeout=60)


def test_a_fifo_planted_as_the_globals_file_fails_the_restore_it_does_not_hang_it(pg, tools, key_file, tmp_path):
    """Before: the globals file beside FILE was found with os.path.exists and given
    to `encpipe open` by name; a FIFO planted under that name (no writer ever
    comes) made the restore wait for ever, before any database was touched. Now it
    is opened without blocking and must be a regular file: 66, one line."""
    db = ensure_small(pg, "hostile_dir_source")
    path, line = backup(pg, tools, str(tmp_path / "b"), db, "--key-file", key_file)
    globals_path = os.path.join(os.path.dirname(path), line["globals"])
    os.unlink(globals_path)
    os.mkfifo(globals_path)
    pg.dropdb(TARGET)
    proc = restore(pg, tools, path, TARGET, "--key-file", key_file)
    assert (proc.returncode, proc.stdout) == (66, b""), proc.stderr.decode()
    assert proc.stderr.decode().splitlines() == [
        f"encpipe-restore: error: cannot read the globals file {globals_path}: not a regular file; "
        "nothing was changed",
        "encpipe-restore: hint: give the right one with --globals FILE, or restore without it with "
        "--no-globals (no roles, no recorded database properties)"]
    assert TARGET not in pg.psql("SELECT datname FROM pg_database").split()


SWAPPER = """#!/bin/sh
# encpipe, after swapping $SWAP_NAME for a FIFO (or a link) the first time it runs
# for FILE (not `keyid`, which reads the key files before FILE is opened)
if [ "$1" != keyid ] && [ ! -e "$SWAP_DONE" ]; then
    : >"$SWAP_DONE"
    mv "$SWAP_NAME" "$SWAP_NAME.moved"
    if [ "$SWAP_WITH" = fifo ]; then mkfifo "$SWAP_NAME"; else ln -s "$SWAP_WITH" "$SWAP_NAME"; fi
fi
exec %s -m encpipe "$@"
"""


def test_file_swapped_after_restore_checked_it_is_still_the_file_restored(pg, tools, key_file, tmp_path):
    """Before: FILE was checked by name (a regular file), then every `encpipe` of the
    restore opened it by name again: swapped for a FIFO meanwhile, the restore hung
    for ever; for a link to another backup, that one was restored. Now FILE is
    opened once, and each `encpipe` reads that descriptor: the restore goes on
    with the file checked."""
    db = ensure_small(pg, "hostile_dir_source")
    directory = tmp_path / "b"
    path, _ = backup(pg, tools, str(directory), db, "--key-file", key_file)
    wrapper = tmp_path / "encpipe-swapping"
    wrapper.write_text(SWAPPER % shlex.quote(sys.executable))
    wrapper.chmod(0o755)
    for swap_with in ("fifo", "/dev/zero"):
        done = tmp_path / f"swapped-{os.path.basename(swap_with)}"
        pg.dropdb(TARGET)
        proc = restore(pg, tools, path, TARGET, "--key-file", key_file,
                       env_extra={"ENCPIPE": str(wrapper), "SWAP_NAME": path, "SWAP_WITH": swap_with,
                                  "SWAP_DONE": str(done)})
        assert done.exists(), (proc.returncode, proc.stderr.decode())  # the restore reached `encpipe open`
        assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
        assert MARKERS[0] in pg.psql("SELECT v FROM t WHERE id = 1", db=TARGET)
        os.unlink(path)
        os.rename(path + ".moved", path)
    pg.dropdb(TARGET)


def test_another_databases_globals_file_planted_beside_file_is_refused(pg, tools, key_file, tmp_path):
    """Before: the globals file beside FILE was taken whatever database it was made
    for. A writer of the directory copied another database's globals file (sealed
    with the same key, so it authenticates) over FILE's run's: the genuine payroll
    data was restored with crm's owner and ACL (CONNECT for every role that could
    connect to crm). Now the properties in a globals file found beside FILE must
    be those of the database FILE's name gives, else 65 before anything is touched."""
    payroll, crm = ensure_small(pg, "hostile_dir_payroll"), ensure_small(pg, "hostile_dir_crm")
    pg.psql("REVOKE CONNECT ON DATABASE hostile_dir_payroll FROM PUBLIC")
    directory = str(tmp_path / "b")
    try:
        path, line = backup(pg, tools, directory, payroll, "--key-file", key_file)
    finally:
        pg.psql("GRANT CONNECT ON DATABASE hostile_dir_payroll TO PUBLIC")
    _, crm_line = backup(pg, tools, directory, crm, "--key-file", key_file)
    planted = os.path.join(directory, line["globals"])
    os.unlink(planted)
    os.link(os.path.join(directory, crm_line["globals"]), planted)
    pg.dropdb(TARGET)
    proc = restore(pg, tools, path, TARGET, "--key-file", key_file)
    assert (proc.returncode, proc.stdout) == (65, b""), proc.stderr.decode()
    assert proc.stderr.decode().splitlines() == [
        f"encpipe-restore: error: the globals file {planted} holds the properties of database hostile_dir_crm, "
        "not of hostile_dir_payroll (FILE's); nothing was changed",
        "encpipe-restore: hint: a copy of another database's globals file? give the right one with --globals "
        "FILE, or restore without it with --no-globals (no roles, no recorded database properties)"]
    assert TARGET not in pg.psql("SELECT datname FROM pg_database").split()


def test_a_key_file_on_a_closed_descriptor_is_66_not_the_file_restore_opens_under_that_number(pg, tools, key_file,
                                                                                                tmp_path):
    """`--passphrase-file /dev/fd/3` (or --key-file) with descriptor 3 closed: the
    restore opens FILE itself, gets that number, and passes it to every `encpipe`
    it runs; before, FILE's ciphertext was then read as the passphrase (a wrong
    key, 77). Now a secret on a closed descriptor is 66 before anything is opened,
    as for encpipe."""
    db = ensure_small(pg, "hostile_dir_source")
    path, _ = backup(pg, tools, str(tmp_path / "b"), db, "--key-file", key_file)
    pg.dropdb(TARGET)
    for option in ("--passphrase-file", "--key-file"):
        proc = restore(pg, tools, path, TARGET, option, "/dev/fd/3")  # run() leaves 3 closed
        assert (proc.returncode, proc.stdout) == (66, b""), proc.stderr.decode()
        assert proc.stderr.decode().splitlines() == [
            "encpipe-restore: error: cannot read file descriptor 3: Bad file descriptor"], proc.stderr.decode()
    assert TARGET not in pg.psql("SELECT datname FROM pg_database").split()


def test_a_backup_at_a_remotes_root_restores_with_its_globals(pg, tools, key_file, tmp_path):
    """REMOTE:NAME (no `/`: a remote, here an rclone alias, whose root holds the
    backups): before, the database FILE's name gives was taken from `REMOTE:NAME`
    whole (`here:hostile_dir_source`), so the run's own globals file was refused
    as another database's (65)."""
    db = ensure_small(pg, "hostile_dir_source")
    directory = tmp_path / "b"
    path, _ = backup(pg, tools, str(directory), db, "--key-file", key_file)
    config = tmp_path / "rclone.conf"
    config.write_text("")
    alias = {"RCLONE_CONFIG": str(config), "RCLONE_CONFIG_HERE_TYPE": "alias",
             "RCLONE_CONFIG_HERE_REMOTE": str(directory)}
    pg.dropdb(TARGET)
    proc = restore(pg, tools, "here:" + os.path.basename(path), TARGET, "--key-file", key_file, env_extra=alias)
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
    assert "warning" not in proc.stderr.decode(), proc.stderr.decode()  # the globals file was found and applied
    assert TARGET in pg.psql("SELECT datname FROM pg_database").split()
    pg.dropdb(TARGET)
