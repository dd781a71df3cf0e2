"""A unit's name holds 255 characters at most (systemd's UNIT_NAME_MAX). The
OnFailure= hook was encpipe-backup-failure@%n.service, the failed unit's whole name
as its instance: 31 characters longer than the backup unit's own. For a database
whose escaped name is 225 to 232 characters (57 bytes of Cyrillic and a few ASCII
ones will do), systemd loaded and ran the backup unit and dropped OnFailure=,
"File name too long": a failed backup went unreported. The hook is now
encpipe-failed@%i.service, the same instance, no longer than the backup unit."""

import re
import shutil
import subprocess

import pytest

from encpipe.backup import unit
from test_systemd_unit import SYSTEMD

LIMIT = 255


def escaped(name):
    return subprocess.run(["systemd-escape", "--", name], capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.parametrize("database", ["бухгалтерия_предприятия_мск_2024", "a" * 232, "shop"])
def test_the_failure_hook_is_loaded_whenever_the_backup_unit_is(database, tmp_path):
    instance = escaped(database)
    name = f"encpipe-backup@{instance}.service"
    assert len(name) <= LIMIT
    text = unit.render("/usr/local/bin/encpipe-backup", [])
    (on_failure,) = re.findall(r"^OnFailure=(.*)$", text, flags=re.M)
    hook = on_failure.replace("%i", instance).replace("%n", name)
    assert len(hook) <= LIMIT and hook == f"encpipe-failed@{instance}.service"
    (tmp_path / name).write_text(text)
    shutil.copy(SYSTEMD / "encpipe-failed@.service", tmp_path / hook)
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", name], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={"SYSTEMD_LOG_LEVEL": "debug", "PATH": "/usr/bin:/bin"})
    assert "Failed to resolve unit specifiers" not in done.stderr and "too long" not in done.stderr, done.stderr
    assert f"\t\tOnFailure: {hook} (origin-file)\n" in done.stdout, done.stderr  # the unit's dump, as loaded


def test_a_database_escaped_past_the_limit_cannot_be_an_instance():
    """README says so: 59 bytes that are not ASCII escape to 236 characters."""
    assert len(f"encpipe-backup@{escaped('я' * 29 + 'a')}.service") == 23 + 29 * 8 + 1
    assert len(f"encpipe-backup@{escaped('я' * 29 + 'a')}.service") > LIMIT
