"""Text that is not UTF-8 on the lost server: a LATIN1 cluster's roles, and a
LATIN1 database's comment and settings in a UTF-8 cluster. pg_dumpall writes a
globals file in the encoding it read in and says so (`SET client_encoding`); the
properties are read in the database's own. Before, the restore decoded the file as
UTF-8 with U+FFFD for what was not (role `Jürgen` came back as `J\ufffdrgen`,
exit 0, and a database it owned was refused for want of `J\\xfcrgen`), and sent a
LATIN1 comment's bytes as UTF-8 (`invalid byte sequence`, once the whole dump had
loaded). Now both come back as they were (README "Disaster recovery")."""

import json
import os

import pytest

from encpipe import pgencoding
from pgcluster import PgCluster
from test_backup_restore import BACKUP, backup, restore, run, script_env
from test_disaster_recovery_cluster import restore_argv


def _backup(cluster, tools, key_file, directory, db):
    proc = run([BACKUP, "--dir", str(directory), "--key-file", key_file, db], script_env(cluster, tools))
    assert proc.returncode == 0, proc.stderr.decode()
    return os.path.join(str(directory), json.loads(proc.stdout)["filename"])


def _utf8(cluster, sql, db="postgres"):
    """psql's rows of `sql`, read as UTF-8 from a session that says it is UTF-8."""
    return cluster.psql("SET client_encoding = 'UTF8'; " + sql, db=db)


def test_a_latin1_clusters_non_ascii_roles_come_back_as_they_were(tools, key_file, tmp_path, empty_cluster):
    with PgCluster(encoding="LATIN1", own_initdb=True) as old:
        _utf8(old, "CREATE ROLE \"Jürgen\" LOGIN PASSWORD 'pw'; CREATE ROLE kasse IN ROLE \"Jürgen\";"
                   "COMMENT ON ROLE kasse IS 'Kassenbenutzer für Läden';"
                   "CREATE DATABASE laden OWNER \"Jürgen\" TEMPLATE template0 ENCODING 'LATIN1' "
                   "LC_COLLATE 'C' LC_CTYPE 'C';")
        _utf8(old, "CREATE TABLE t (x text); INSERT INTO t VALUES ('Grüße')", db="laden")
        path = _backup(old, tools, key_file, tmp_path / "b", "laden")
    new = empty_cluster
    proc = run(restore_argv(key_file, path, "laden"), script_env(new, tools))
    assert proc.returncode == 0, proc.stderr.decode()
    assert "encpipe-restore: created roles: Jürgen, kasse" in proc.stderr.decode().splitlines()
    assert _utf8(new, "SELECT rolname FROM pg_roles WHERE rolname IN ('Jürgen', 'kasse') ORDER BY 1") == \
        "Jürgen\nkasse\n"
    assert _utf8(new, "SELECT shobj_description('kasse'::regrole, 'pg_authid')") == "Kassenbenutzer für Läden\n"
    assert _utf8(new, "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'laden'") == "Jürgen\n"
    assert _utf8(new, "SELECT pg_has_role('kasse', 'Jürgen', 'MEMBER')") == "t\n"
    assert _utf8(new, "SELECT x FROM t", db="laden") == "Grüße\n"


def test_a_latin1_databases_comment_and_settings_come_back(tools, key_file, tmp_path, empty_cluster):
    with PgCluster(own_initdb=True) as old:
        old.psql("CREATE ROLE app_owner; CREATE DATABASE legacy OWNER app_owner TEMPLATE template0 "
                 "ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C'")
        _utf8(old, "COMMENT ON DATABASE legacy IS 'Altsystem für Bestellungen';"
                   "ALTER DATABASE legacy SET application_name = 'Müller-App'", db="legacy")
        path = _backup(old, tools, key_file, tmp_path / "b", "legacy")
    new = empty_cluster
    proc = run(restore_argv(key_file, path, "legacy"), script_env(new, tools))
    assert proc.returncode == 0, proc.stderr.decode()
    assert _utf8(new, "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = 'legacy'") \
        == "Altsystem für Bestellungen\n"
    assert _utf8(new, "SELECT setconfig FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase "
                      "WHERE datname = 'legacy'") == "{application_name=Müller-App}\n"


@pytest.mark.parametrize("raw, text, encoding", [
    (b"SET client_encoding = 'LATIN1';\nCREATE ROLE \"J\xfcrgen\";\n", "SET client_encoding = 'LATIN1';\n"
     "CREATE ROLE \"J\u00fcrgen\";\n", "LATIN1"),
    (b"SET client_encoding = 'UTF8';\nCREATE ROLE \"J\xc3\xbcrgen\";\n", "SET client_encoding = 'UTF8';\n"
     "CREATE ROLE \"J\u00fcrgen\";\n", None),
    (b"SET client_encoding = 'SQL_ASCII';\nCREATE ROLE \"J\xfcrgen\";\n", "SET client_encoding = 'SQL_ASCII';\n"
     "CREATE ROLE \"J\udcfcrgen\";\n", None),  # bytes of no encoding: as they are, for the server to judge
])
def test_a_globals_file_is_read_in_the_encoding_it_says(raw, text, encoding):
    assert pgencoding.globals_text(raw) == (text, encoding)


def test_properties_that_are_not_utf8_are_read_in_the_databases_encoding():
    read = {"owner": "J\udcfcrgen", "comment": "f\u00fcr", "acl": ["=c/J\udcfcrgen"], "limit": -1}
    assert pgencoding.readable(read, "LATIN1") == {"owner": "Jürgen", "comment": "für", "acl": ["=c/Jürgen"],
                                                   "limit": -1}
    assert pgencoding.readable(read, "UTF8") == read and pgencoding.readable(read, "SQL_ASCII") == read


def test_a_latin1_cluster_restored_onto_a_latin1_cluster(tools, key_file, tmp_path):
    """The new server as the lost one was made (initdb -E LATIN1): before, the roles
    were created right but every other session read and wrote LATIN1, so the scratch
    database's owner was not found (1), and the roles dropped again were not: a login
    left, `dropped the roles this restore had created again` said all the same."""
    with PgCluster(encoding="LATIN1", own_initdb=True) as old:
        _utf8(old, "CREATE ROLE \"Jürgen\" LOGIN PASSWORD 'pw'; CREATE DATABASE laden OWNER \"Jürgen\"")
        _utf8(old, "CREATE TABLE t (x text); INSERT INTO t VALUES ('Grüße')", db="laden")
        path = _backup(old, tools, key_file, tmp_path / "b", "laden")
    with PgCluster(encoding="LATIN1", own_initdb=True) as new:
        proc = run(restore_argv(key_file, path, "laden"), script_env(new, tools))
        assert proc.returncode == 0, proc.stderr.decode()
        assert "encpipe-restore: created roles: Jürgen" in proc.stderr.decode().splitlines()
        assert _utf8(new, "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'laden'") == "Jürgen\n"
        assert _utf8(new, "SELECT x FROM t", db="laden") == "Grüße\n"
        proc = run(restore_argv(key_file, path, "laden"), script_env(new, tools))  # in place: the role is there
        assert proc.returncode == 0, proc.stderr.decode()
        assert _utf8(new, "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'J%rgen'") == "1\n"


@pytest.mark.parametrize("raw", [b"SET client_encoding = 'EUC_JP';\nCREATE ROLE \"\xa1\xc1\";\n",
                                 b"SET client_encoding = 'SJIS';\nCREATE ROLE \"\x81\x60\";\n"])
def test_an_encoding_python_reads_otherwise_is_refused_when_not_ascii(raw):
    with pytest.raises(pgencoding.Unconverted):
        pgencoding.globals_text(raw)
    ascii_only = raw.split(b"\n")[0] + b"\nCREATE ROLE app;\n"
    assert pgencoding.globals_text(ascii_only) == (ascii_only.decode(), None)


@pytest.mark.parametrize("encoding, setting, client, comment", [
    ("LATIN1", "application_name = 'naïve'", {"PGCLIENTENCODING": "UTF8"}, "café"),
    ("UTF8", "client_encoding = 'LATIN1'", {}, "café ☕"),
], ids=["latin1-database-utf8-client", "utf8-database-latin1-setting"])
def test_a_databases_properties_are_recorded_in_its_own_encoding_whatever_the_client_says(
        pg, tools, key_file, tmp_path, encoding, setting, client, comment):
    """The backup read a database's properties in the client encoding its session
    happened to have (PGCLIENTENCODING, the database's own client_encoding setting),
    and the restore reads them as the database's encoding: a LATIN1 database's comment
    `café` came back `cafÃ©`, exit 0; a UTF-8 database with client_encoding LATIN1 set
    and `☕` in its comment was not backed up at all (`has no equivalent in encoding
    "LATIN1"`). Now that session speaks the database's encoding."""
    db, copy = "props_%s" % encoding.lower(), "props_%s_copy" % encoding.lower()
    for name in (db, copy):
        pg.dropdb(name)
    pg.psql("CREATE DATABASE %s TEMPLATE template0 ENCODING '%s' LC_COLLATE 'C' LC_CTYPE 'C'" % (db, encoding))
    _utf8(pg, "COMMENT ON DATABASE %s IS '%s'; ALTER DATABASE %s SET %s" % (db, comment, db, setting))
    path, _ = backup(pg, tools, str(tmp_path / "b"), db, "--key-file", key_file, env_extra=client)
    proc = restore(pg, tools, path, copy, "--key-file", key_file)
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
    for name in (db, copy):
        assert _utf8(pg, "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = '%s'"
                     % name) == comment + "\n"
        assert _utf8(pg, "SELECT setconfig FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase "
                         "WHERE datname = '%s'" % name) == "{%s}\n" % setting.replace(" = ", "=").replace("'", "")
    for name in (db, copy):
        pg.dropdb(name)
