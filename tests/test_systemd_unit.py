"""The unit `encpipe-backup --systemd-unit` prints, read as systemd reads it (no
systemd here): ExecStart= as encpipe-backup parses it once %I is the database."""

import re
import shlex

import pytest

from encpipe.backup import unit
from encpipe.errors import UsageError
from encpipe.pgbackupargs import parse

SCRIPT = "/usr/local/bin/encpipe-backup"


def exec_start(text, instance):
    """ExecStart='s words, %I the (unescaped) instance name: systemd splits the line
    first and resolves specifiers in each word (a name with a space stays one word)."""
    (line,) = re.findall(r"^ExecStart=(.*)$", text, flags=re.M)
    return [word.replace("%I", instance).replace("%%", "%") for word in shlex.split(line)]


@pytest.mark.parametrize("instance", ["shop", "crm-prod", "my db", "-dash"])
def test_the_instance_is_the_database_with_pg_dump_options_after_it(instance):
    """Options after -- are pg_dump's: before, %I came after them, so encpipe-backup
    took the first pg_dump option for the database and the database for a pg_dump
    argument (64, every night); and a database whose name starts with - was taken
    for an option."""
    text = unit.render(SCRIPT, ["--dir", "/srv/b", "--key-file", "/etc/encpipe/k", "--",
                                "--exclude-table-data=log", "-n", "public"])
    o = parse(exec_start(text, instance)[1:])
    assert (o["db"], o["dump"], o["dir"]) == (instance, ["--exclude-table-data=log", "-n", "public"], "/srv/b")
    o = parse(exec_start(unit.render(SCRIPT, []), instance)[1:])
    assert (o["db"], o["dump"], o["dir"]) == (instance, [], unit.DEFAULT_DIR)


def test_a_database_among_the_options_is_refused():
    """The instance names the database: one among the options made every run fail
    (only one DBNAME), or a pg_dump argument."""
    with pytest.raises(UsageError, match="shop: the database is the instance"):
        unit.render(SCRIPT, ["--dir", "/srv/b", "shop"])
