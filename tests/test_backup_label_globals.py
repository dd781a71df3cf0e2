"""A globals file's label: encpipe-backup seals it first in every globals file, as in
an uncompressed plain dump (`-- encpipe-backup v1 db=<db> at=<run's time>`).

Before, a globals file carried no label: verify tied it to its database and run
only through its properties line, the last, read from the last 64 KiB of its
plaintext; one over that (a long database comment, many settings) was not
checked, and another database's or run's globals file renamed into a series
counted as its own. Its label is read from the first bytes, whatever the file's
length. The checks that a file under a dump's name does not start as
pg_dumpall's output, and that one under a globals file's name does, look past the
label: a labelled globals file under a dump's name would otherwise pass the dump's
label check (same database, same time).
"""

import io
import json
import os
import time

import pytest

from test_backup_dir import ENV, KEY
from test_backup_dir_hostile import hours_ago, script

from encpipe import RawKey, seal
from encpipe.backup import label

CLUSTER = b"--\n-- PostgreSQL database cluster dump\n--\n\nCREATE ROLE app;\n"
DATABASE = b"--\n-- PostgreSQL database dump\n--\n\nCREATE TABLE t (i int);\n"
LONG = 70 << 10  # a database comment: the properties line is over verify's 64 KiB


def _sealed(path, plaintext, hours):
    out = io.BytesIO()
    seal(io.BytesIO(plaintext), out, [RawKey(KEY)], chunk_log2=14)
    path.write_bytes(out.getvalue())
    os.utime(path, (time.time() - hours * 3600 + 60,) * 2)  # written a minute after its run started
    return path.name


def _globals(d, db, hours, comment=""):
    """The globals file of `db`'s run `hours` ago, as encpipe-backup writes it: label,
    pg_dumpall's output, properties line."""
    stamp = hours_ago(hours)
    props = json.dumps({"comment": comment, "name": db, "owner": "postgres", "run": f"{db}_{stamp}"},
                       sort_keys=True)
    plaintext = label.prefix("none", db, stamp) + CLUSTER + f"-- encpipe-database-properties: {props}\n".encode()
    return _sealed(d / f"{db}_{stamp}.globals.sql.enc", plaintext, hours)


def test_a_labelled_globals_file_under_a_dumps_name_is_refused(tmp_path):
    """Its label names the dump's database and time (the run's), so only the check
    that it starts as pg_dumpall's output, past the label, refuses it."""
    d = tmp_path / "b"
    d.mkdir()
    name = _globals(d, "shop", 24)
    planted = d / name.replace(".globals.sql.enc", ".sql.enc")
    os.rename(d / name, planted)
    done = script("verify", d, env=ENV)
    assert done.returncode == 65, done.stderr
    assert done.stderr.decode() == (f"encpipe-verify: error: {planted}: holds pg_dumpall's dump of a cluster (a "
                                    "globals file under a dump's name?), not a database's dump\n")


def test_a_labelled_dump_under_a_globals_files_name_is_refused(tmp_path):
    """The other way: its label names the globals file's database and run too."""
    d = tmp_path / "b"
    d.mkdir()
    stamp = hours_ago(24)
    planted = d / _sealed(d / f"shop_{stamp}.globals.sql.enc", label.prefix("none", "shop", stamp) + DATABASE, 24)
    done = script("verify", d, env=ENV)
    assert done.returncode == 65, done.stderr
    assert done.stderr.decode() == (f"encpipe-verify: error: {planted}: does not hold pg_dumpall's dump of a "
                                    "cluster (a database's dump under a globals file's name?)\n")


def test_a_labelled_globals_file_with_a_long_properties_line_verifies(tmp_path):
    d = tmp_path / "b"
    d.mkdir()
    name = _globals(d, "shop", 24, comment="x" * LONG)
    done = script("verify", d, env=ENV)
    assert done.returncode == 0, done.stderr
    assert [(r["filename"], r["ok"]) for r in json.loads(done.stdout)["results"]] == [(name, True)]


@pytest.mark.parametrize("other", ["database", "run"])
def test_a_labelled_globals_file_with_a_long_properties_line_is_tied_to_its_name(tmp_path, other):
    """Another database's (crm's) or another run's globals file, renamed a second after
    shop's newest: its properties line, over 64 KiB, is not read, its label is."""
    d = tmp_path / "b"
    d.mkdir()
    real = [_globals(d, "shop", 48), _globals(d, "shop", 24)]
    moved = _globals(d, "crm" if other == "database" else "shop", 24 if other == "database" else 30,
                     comment="x" * LONG)
    stamp = hours_ago(24 - 1 / 3600)
    planted = d / f"shop_{stamp}.globals.sql.enc"
    os.rename(d / moved, planted)
    os.utime(planted, ((d / real[1]).stat().st_mtime,) * 2)
    why = ("holds a backup of database crm, not of shop (its name's)" if other == "database" else
           f"holds the backup made at {moved[5:21]}, not at {stamp} (its name's time)")
    why += ": a copy of another backup put under this name?"
    done = script("verify", d, env=ENV)
    assert done.returncode == 65, done.stderr
    assert done.stderr.decode() == f"encpipe-verify: error: {planted}: {why}\n"
    done = script("prune", "--keep-last", "1", "--database", "shop", d, env=ENV)
    assert done.returncode == 65, done.stderr
    assert sorted(os.listdir(d)) == sorted([real[1], planted.name])
    assert done.stderr.decode() == f"encpipe-prune: warning: left {planted.name}: failed verification: {why}\n"
