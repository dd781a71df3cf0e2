"""A custom archive's header holds the time pg_dump started in pg_dump's local time
(TZ), in a zone it does not name; verify takes it for the backup its name says only
within UTC-13 to UTC+16 of the name's time (label.ARCHIVE_EARLIEST, ARCHIVE_LATEST).
encpipe-backup runs pg_dump with TZ=UTC0, so that the time in the archives it makes
is its name's whatever the zone of the host. Before, under a valid POSIX TZ past that
window (`<-14>14`, `<+17>-17`), encpipe-backup wrote each custom dump, exit 0, that
verify then failed (65: "holds an archive pg_dump made at ... not near ..."), prune
left and check --verify never counted. The zones of the time zone database (Chatham's
+13:45, St John's -3:30, an invalid name, read as UTC) were already within it."""

import os

import pytest

from test_backup_restore import BACKUP, REPO, ensure_small, run, script_env

VERIFY = os.path.join(REPO, "scripts", "encpipe-verify")


@pytest.mark.parametrize("tz", ["<-14>14", "<+17>-17", "Pacific/Chatham", "America/St_Johns", "Invalid/Zone"])
def test_a_custom_dump_made_in_any_time_zone_verifies(pg, tools, key_file, tmp_path, tz):
    db = ensure_small(pg, "zones_source")
    env = script_env(pg, tools, TZ=tz)
    made = run([BACKUP, "--dir", tmp_path / "b", "--format", "custom", "--key-file", key_file, db], env)
    assert made.returncode == 0, made.stderr.decode()
    checked = run([VERIFY, "--key-file", key_file, tmp_path / "b"], env)
    assert (checked.returncode, checked.stderr) == (0, b""), checked.stderr.decode()
