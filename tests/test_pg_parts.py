"""The pure parts of the restore tools: refused pass-through options, the globals
filter, the database properties' SQL."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from encpipe import pgglobals, pgopts, pgprops
from pgcluster import _find_bindir

GLOBALS = r'''--
-- PostgreSQL database cluster dump
--

\restrict abcdef

SET default_transaction_read_only = off;
SET standard_conforming_strings = on;

CREATE ROLE app_owner;
ALTER ROLE app_owner WITH NOSUPERUSER INHERIT LOGIN PASSWORD 'SCRAM-SHA-256$4096:x=';
COMMENT ON ROLE app_owner IS 'it''s; not the end
of the statement';
CREATE ROLE "Weird ""Role""";
ALTER ROLE "Weird ""Role""" WITH NOLOGIN;
CREATE ROLE postgres;
ALTER ROLE postgres WITH SUPERUSER INHERIT CREATEROLE CREATEDB LOGIN REPLICATION BYPASSRLS PASSWORD 'changed';
ALTER ROLE postgres SET work_mem TO '1GB';
GRANT app_owner TO "Weird ""Role""" GRANTED BY postgres;
GRANT pg_read_all_data TO postgres GRANTED BY postgres;
CREATE TABLESPACE fast OWNER postgres LOCATION '/srv/fast';
DROP ROLE victim;

\unrestrict abcdef
-- encpipe-database-properties: {"name": "shop", "owner": "app_owner", "acl": ["=T/app_owner", "app_owner=CTc/app_owner", "\"Weird \"\"Role\"\"\"=c/app_owner"], "settings": [{"role": null, "config": ["search_path=\"$user\", app"]}], "comment": "it's", "encoding": "UTF8", "collate": "C", "ctype": "C", "connlimit": -1}
'''


def test_globals_keep_only_what_concerns_missing_roles():
    statements, props = pgglobals.statements(GLOBALS)
    assert props["owner"] == "app_owner"
    keep, created, skipped = pgglobals.plan(statements, {"postgres"})
    assert created == ["app_owner", 'Weird "Role"']
    assert keep == [
        "SET default_transaction_read_only = off;",
        "SET standard_conforming_strings = on;",
        "CREATE ROLE app_owner;",
        "ALTER ROLE app_owner WITH NOSUPERUSER INHERIT LOGIN PASSWORD 'SCRAM-SHA-256$4096:x=';",
        "COMMENT ON ROLE app_owner IS 'it''s; not the end\nof the statement';",
        'CREATE ROLE "Weird ""Role""";',
        'ALTER ROLE "Weird ""Role""" WITH NOLOGIN;',
        'GRANT app_owner TO "Weird ""Role""" GRANTED BY postgres;',
    ]
    assert not [s for s in keep if "postgres WITH" in s or "DROP" in s or "TABLESPACE" in s]
    assert "DROP ROLE victim;" in skipped
    assert pgglobals.tablespaces(skipped) == ["fast"]


def test_globals_with_every_role_present_change_nothing():
    statements, _ = pgglobals.statements(GLOBALS)
    keep, created, _ = pgglobals.plan(statements, {"postgres", "app_owner", 'Weird "Role"'})
    assert created == [] and all(s.startswith("SET ") for s in keep)


def test_memberships_left_out_are_those_making_an_existing_role_a_member_of_a_new_one():
    """A new role's memberships are kept (in new and existing roles); one that makes a role
    the server has a member of a new role is left out and named (the restore's warning);
    one between roles the server has is left out as every statement of theirs is, unnamed."""
    statements = ["CREATE ROLE bob;", "CREATE ROLE grp;", 'CREATE ROLE "Grp ""X""";', "CREATE ROLE alice;",
                  "GRANT grp TO alice GRANTED BY postgres;", 'GRANT "Grp ""X""" TO alice;', "GRANT grp TO bob;",
                  "GRANT pg_monitor TO alice;", "GRANT pg_monitor TO bob;", "GRANT alice TO postgres;"]
    keep, created, skipped = pgglobals.plan(statements, {"postgres", "alice", "pg_monitor"})
    assert created == ["bob", "grp", 'Grp "X"']
    assert [s for s in keep if s.startswith("GRANT")] == ["GRANT grp TO bob;", "GRANT pg_monitor TO bob;"]
    assert pgglobals.members_left(skipped, created) == ["alice in grp", 'alice in Grp "X"']


def test_properties_sql():
    _, props = pgglobals.statements(GLOBALS)
    assert pgprops.roles_needed(props) == {"app_owner", 'Weird "Role"'}
    assert pgprops.roles_needed(props, no_owner=True, no_acl=True) == set()
    create = pgprops.create_sql("tmp", props)
    assert create == ("CREATE DATABASE \"tmp\" TEMPLATE template0 ALLOW_CONNECTIONS false "
                      "ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C';")
    assert pgprops.create_sql("tmp", dict(props, connlimit=3)) == create  # set at the swap
    assert pgprops.private_sql("tmp", props).splitlines() == [
        'REVOKE ALL ON DATABASE "tmp" FROM PUBLIC;', 'ALTER DATABASE "tmp" OWNER TO "app_owner";',
        'ALTER DATABASE "tmp" OWNER TO CURRENT_USER;', 'ALTER DATABASE "tmp" ALLOW_CONNECTIONS true;']
    assert pgprops.private_sql("tmp", props, no_owner=True, owner="dba").splitlines() == [
        'REVOKE ALL ON DATABASE "tmp" FROM PUBLIC;', 'ALTER DATABASE "tmp" OWNER TO "dba";',
        'ALTER DATABASE "tmp" ALLOW_CONNECTIONS true;']
    finish = pgprops.finish_sql("tmp", dict(props, connlimit=3))
    assert finish.splitlines()[:4] == [
        'ALTER DATABASE "tmp" OWNER TO "app_owner";',
        'GRANT CONNECT ON DATABASE "tmp" TO "Weird ""Role""";',  # its pg_shdepend line, then the ACL as recorded
        "UPDATE pg_catalog.pg_database SET datacl = '{\"=T/app_owner\",\"app_owner=CTc/app_owner\","
        "\"\\\"Weird \\\"\\\"Role\\\"\\\"\\\"=c/app_owner\"}'::aclitem[] WHERE datname = 'tmp';",
        'ALTER DATABASE "tmp" CONNECTION LIMIT 3;']
    assert pgprops.finish_sql("tmp", props, no_owner=True, no_acl=True).splitlines()[0] == (
        "UPDATE pg_catalog.pg_database SET datacl = NULL WHERE datname = 'tmp';")
    assert pgprops.finish_sql("tmp", None) == "UPDATE pg_catalog.pg_database SET datacl = NULL WHERE datname = 'tmp';"
    assert pgprops.finish_sql("tmp", props, no_acl=True, superuser=False).splitlines()[:2] == [
        'GRANT CONNECT, TEMPORARY ON DATABASE "tmp" TO PUBLIC;', 'ALTER DATABASE "tmp" OWNER TO "app_owner";']
    assert "'{\"search_path=\\\"$user\\\", app\"}'::text[]" in finish
    assert finish.endswith("COMMENT ON DATABASE \"tmp\" IS 'it''s';")



def test_properties_sql_keeps_a_zero_limit_role_settings_backslashes_and_an_icu_locale():
    """CONNECTION LIMIT 0 is a limit (only -1 is none); a setting made for one role
    stays that role's (and is left out where the role is missing: NULL is no role);
    a value's backslash and quote survive the array literal; an ICU locale is kept."""
    props = {"connlimit": 0, "settings": [{"role": "app owner", "config": ["work_mem=64MB", 'x.y=a\\b"c']}],
             "encoding": "UTF8", "collate": "en_US.UTF-8", "ctype": "en_US.UTF-8",
             "row": {"datlocprovider": "i", "daticulocale": "und-x-icu"}}
    role = "(SELECT oid FROM pg_catalog.pg_roles WHERE rolname = 'app owner')"
    assert pgprops.finish_sql("tmp", props, no_owner=True, no_acl=True).splitlines() == [
        "UPDATE pg_catalog.pg_database SET datacl = NULL WHERE datname = 'tmp';",
        'ALTER DATABASE "tmp" CONNECTION LIMIT 0;',
        f"INSERT INTO pg_catalog.pg_db_role_setting SELECT d.oid, {role}, "
        '\'{"work_mem=64MB","x.y=a\\\\b\\"c"}\'::text[] FROM pg_catalog.pg_database d '
        f"WHERE d.datname = 'tmp' AND {role} IS NOT NULL;"]
    assert pgprops.create_sql("tmp", props) == (
        "CREATE DATABASE \"tmp\" TEMPLATE template0 ALLOW_CONNECTIONS false ENCODING 'UTF8' LC_COLLATE"
        " 'en_US.UTF-8' LC_CTYPE 'en_US.UTF-8' LOCALE_PROVIDER icu ICU_LOCALE 'und-x-icu';")

@pytest.mark.parametrize("tool, args, named", [
    ("pg_dump", ["-f", "x"], "-f"), ("pg_dump", ["-vfx"], "-vfx"), ("pg_dump", ["--file=x"], "--file=x"),
    ("pg_dump", ["-F", "d"], "-F"), ("pg_dump", ["--jobs", "3"], "--jobs"), ("pg_dump", ["-C"], "-C"),
    ("pg_dump", ["-h", "elsewhere"], "-h"), ("pg_restore", ["-j4"], "-j4"), ("pg_restore", ["--dbname=x"], "--dbname=x"),
    ("pg_restore", ["-l"], "-l"), ("pg_restore", ["--role=x"], "--role=x"), ("psql", ["-c", "select"], "-c"),
    ("psql", ["-v", "ON_ERROR_STOP=0"], "-v ON_ERROR_STOP"), ("psql", ["--set=ON_ERROR_STOP=0"], "--set"),
    ("psql", ["--set", "ON_ERROR_STOP=0"], "--set"), ("psql", ["-L", "log"], "-L"), ("psql", ["-aLlog"], "-aLlog"),
    # pg_restore writes SQL for psql: no password of its own, no \restrict key, no transactions but one
    ("pg_restore", ["-w"], "-w"), ("pg_restore", ["-OW"], "-OW"), ("pg_restore", ["--no-password"], "--no-password"),
    ("pg_restore", ["--password"], "--password"), ("pg_restore", ["--restrict-key=k"], "--restrict-key=k"),
    # psql reads the dump on its standard input: -W, a prompt, would read the restore's \restrict line there
    ("psql", ["-W"], "-W"), ("psql", ["-aW"], "-aW"), ("psql", ["--password"], "--password"),
    ("pg_restore", ["--restrict-key", "k"], "--restrict-key"), ("pg_restore", ["--transaction-size=9"],
                                                                 "--transaction-size=9"),
    # pg_dump runs with -w: its -W, a prompt, could not help (pg_dumpall's is -w) and stopped cron mail's runs
    ("pg_dump", ["-W"], "-W"), ("pg_dump", ["--password"], "--password"), ("pg_dump", ["-vW"], "-vW"),
])
def test_refused_options_are_named(tool, args, named):
    with pytest.raises(pgopts.RefusedOption, match="option %s" % named.split()[0]):
        pgopts.check(tool, args)


@pytest.mark.parametrize("tool, args", [
    ("pg_dump", ["--exclude-table-data=big", "-N", "audit", "-T", "x", "-v", "-Z", "9"]),
    ("pg_dump", ["-T", "-f"]),  # -f is the value of -T here
    ("pg_restore", ["--no-owner", "--no-acl", "-O", "-x", "-1", "-n", "public", "-L", "list"]),
    ("psql", ["-v", "VERBOSITY=default", "-w", "-q1X"]),
    ("pg_restore", ["-e", "--single-transaction", "--no-data-for-failed-tables", "-c", "--if-exists", "-v"]),
    ("pg_restore", ["--schema", "public", "--section", "data", "--use-list", "list", "-t", "x"]),
    ("psql", ["--set", "SHOW_CONTEXT=errors", "--variable=VERBOSITY=verbose", "-vVERBOSITY=terse", "--se",
              "VERBOSITY", "--no-psqlrc", "--single-transaction", "--qu", "--no-pass"]),
    ("pg_restore", ["-t", "-f", "--table", "-d", "--no-ac", "-Ox", "--no-own", "-L-j"]),  # -f, -d, -j: values
    ("pg_dump", ["-T", "-T", "-N", "-h", "-Tf", "--exclude-table", "--file", "--rows=5", "--no-sy"]),
    ("pg_dump", ["-N", "public"]),
    ("pg_dump", ["--exclude-table", "a", "--exclude-table-data", "b", "--exclude-schema", "s", "--lock-wait-timeout",
                 "5s"]),
    # exclusions: what every backup of the database leaves out
    ("pg_dump", ["--exclude-table-and-children=p", "--exclude-table-data-and-children", "q", "--exclude-extension=e",
                 "-B", "--no-blobs", "--no-large-objects", "--no-owner", "--no-acl", "--no-comments",
                 "--no-unlogged-table-data", "--no-publications", "--no-subscriptions", "--no-statistics",
                 "--exclude-sch", "x", "--exclude-table-data-a=y"]),
])
def test_allowed_options_pass(tool, args):
    pgopts.check(tool, args)


@pytest.mark.parametrize("tool, args, named", [
    ("pg_restore", ["other.dump"], "other.dump"), ("pg_restore", ["--no-owner", "-"], "-"),
    ("pg_restore", ["--schema", "public", "x"], "x"),
    ("psql", ["someone"], "someone"), ("psql", ["-1", "otherdb", "someone"], "otherdb"),
])
def test_arguments_that_are_not_options_are_refused(tool, args, named):
    with pytest.raises(pgopts.RefusedOption, match="^%s argument %s is not an option: the backup is the only input"
                       % (tool, named)):
        pgopts.check(tool, args)


@pytest.mark.parametrize("args, named", [
    (["otherdb"], "otherdb"), (["-N", "public", "otherdb"], "otherdb"),
    (["--exclude-table", "t", "otherdb"], "otherdb"),
])
def test_pg_dump_takes_no_database_name_but_dbname(args, named):
    with pytest.raises(pgopts.RefusedOption, match="^pg_dump argument %s is not an option: pg_dump would dump "
                       "that database instead" % named):
        pgopts.check("pg_dump", args)


@pytest.mark.parametrize("tool, args", [
    ("psql", ["--"]), ("psql", ["-q", "--"]), ("pg_restore", ["--", "x"]), ("pg_dump", ["--", "otherdb"]),
    ("pg_dump", ["-N", "s", "--"]),
])
def test_the_end_of_the_options_is_refused(tool, args):
    """After `--` the tool takes every argument for no option: psql, given the restore's
    own `-f -` after the user's options, took -f for the user name and read its standard
    input without one transaction. Before, `--` passed."""
    with pytest.raises(pgopts.RefusedOption, match="^%s argument -- is not allowed: %s would take every argument "
                       r"after it for no option \(psql the restore's own -f\)$" % (tool, tool)):
        pgopts.check(tool, args)


def test_plain_dumps_take_compress_not_z():
    with pytest.raises(pgopts.RefusedOption, match="--compress"):
        pgopts.check("pg_dump", ["-Z", "5"], plain_dump=True)


@pytest.mark.parametrize("tool, args, named", [
    ("pg_dump", ["--for=t"], "--for=t (-F, --format)"),
    ("pg_dump", ["--dbn=other"], "--dbn=other (-d, --dbname)"),
    ("pg_dump", ["--jo=2"], "--jo=2 (-j, --jobs)"),
    ("pg_dump", ["--cr"], "--cr (-C, --create)"),
    ("pg_dump", ["--ho=elsewhere"], "--ho=elsewhere (-h, --host)"),
    ("pg_restore", ["--li"], "--li (-l, --list)"),
    ("pg_restore", ["--ro=alice"], "--ro=alice (--role)"),
    ("pg_restore", ["--restrict-k=k"], "--restrict-k=k (--restrict-key)"),
    ("psql", ["--se=ON_ERROR_STOP=0"], "--se=ON_ERROR_STOP=0 (-v, --set)"),
    ("psql", ["--vari", "ON_ERROR_STOP=off"], "--vari (-v, --variable)"),
    ("psql", ["--log=/tmp/statements"], "--log=/tmp/statements (-L, --log-file)"),
    ("psql", ["--out=/tmp/x"], "--out=/tmp/x (-o, --output)"),
])
def test_an_abbreviated_long_option_is_the_option_it_abbreviates(tool, args, named):
    """The PostgreSQL tools take a long option by any unambiguous prefix (getopt_long):
    `--for=t` is `--format=t`, which the exact names alone let through."""
    with pytest.raises(pgopts.RefusedOption, match="^%s option %s is not allowed" % (tool, re.escape(named))):
        pgopts.check(tool, args)


@pytest.mark.parametrize("tool, args, named", [
    # the value of -T is "-T"; then -f FILE: pg_dump wrote the whole dump to FILE
    ("pg_dump", ["-T", "-T", "-f", "/tmp/plain.sql"], "-f (-f, --file)"),
    ("pg_dump", ["--exclude-table", "-t", "--file=/tmp/x"], "--file=/tmp/x (-f, --file)"),
    ("pg_dump", ["-T", "-T", "-C"], "-C (-C, --create)"),
    ("pg_restore", ["-t", "-t", "-f", "/tmp/sql"], "-f (-f, --file)"),
    ("pg_restore", ["--tab", "-t", "-d", "other"], "-d (-d, --dbname)"),
    ("pg_restore", ["-L", "-n", "-j4"], "-j4 (-j, --jobs)"),
])
def test_a_value_that_looks_like_an_option_hides_none(tool, args, named):
    """An option's value is the next argument whatever it looks like; the argument after
    it is read afresh. Before, an argument after a value that looked like an option that
    takes one was taken for that option's value, unread."""
    with pytest.raises(pgopts.RefusedOption, match="^%s option %s is not allowed" % (tool, re.escape(named))):
        pgopts.check(tool, args)


@pytest.mark.parametrize("tool, args", [
    ("pg_dump", ["-T", "-n", "otherdb"]), ("pg_restore", ["-n", "-n", "other.dump"]),
    ("pg_dump", ["--exclude-schema", "--table", "otherdb"]),
])
def test_an_argument_after_a_value_like_an_option_is_read_afresh(tool, args):
    with pytest.raises(pgopts.RefusedOption, match="^%s argument %s is not an option" % (tool, args[-1])):
        pgopts.check(tool, args)


@pytest.mark.parametrize("tool, args, why", [
    ("psql", ["-T"], "needs a value"), ("psql", ["-v"], "needs a value"), ("psql", ["--set"], "needs a value"),
    ("pg_dump", ["-t"], "needs a value"), ("pg_restore", ["-e", "--use-list"], "needs a value"),
    ("pg_dump", ["--no-such-option"], "unknown: it is none of the options of pg_dump 15 to 18"),
    ("pg_dump", ["-vX"], "unknown: it is none of the options of pg_dump 15 to 18 (-X)"),
    ("pg_restore", ["--=x"], "unknown"), ("psql", ["-Y"], "unknown"),
    ("pg_dump", ["--no-s"], "ambiguous: give it in full"), ("pg_dump", ["--fi", "/tmp/plain.sql"], "ambiguous"),
    ("pg_restore", ["--no-da"], "ambiguous"), ("psql", ["--single"], "ambiguous"),
])
def test_an_option_that_cannot_be_read_is_refused(tool, args, why):
    """An option the tool would take the restore's own next argument for the value of
    (psql's -f), an option none of the tools has (how the tool would read what follows
    cannot be told) and a prefix of several (pg_dump 17's --filter beside --file)."""
    arg = args[-1] if args[0] == "-e" else args[0]
    with pytest.raises(pgopts.RefusedOption, match="^%s option %s is %s" % (tool, re.escape(arg), re.escape(why))
                       if why != "needs a value" else "^%s option %s needs a value$" % (tool, re.escape(arg))):
        pgopts.check(tool, args)


@pytest.mark.parametrize("args, named", [
    (["-v", "SINGLESTEP=on"], "-v (-v, --set)"), (["--set=SINGLELINE=on"], "--set=SINGLELINE=on (-v, --set)"),
    (["--variable", "ON_ERROR_ROLLBACK=on"], "--variable (-v, --variable)"), (["-vECHO=all"], "-vECHO=all (-v, --set)"),
    (["-S"], "-S (-S, --single-line)"), (["-a"], "-a (-a, --echo-all)"), (["-e"], "-e (-e, --echo-queries)"),
    (["-b"], "-b (-b, --echo-errors)"), (["-qx"], "-qx (-x, --expanded)"), (["-P", "pager=off"], "-P (-P, --pset)"),
    (["-n"], "-n (-n, --no-readline)"), (["--csv"], "--csv (--csv)"), (["-v", "x=1"], "-v (-v, --set)"),
])
def test_a_plain_dumps_psql_takes_only_what_it_needs(args, named):
    """psql's other options change how it reads the dump (-S, -v SINGLESTEP=on: -s
    otherwise spelled, which reads its answers from the dump), what it echoes, or
    nothing a restore needs; a variable may even stand in the dump's SQL (:name)."""
    with pytest.raises(pgopts.RefusedOption, match="^psql option %s is not allowed: a plain dump's psql takes only -v "
                       r"\(--set, --variable\) VERBOSITY=\.\.\. or SHOW_CONTEXT=\.\.\., and -q, -1, -X, -w$"
                       % re.escape(named)):
        pgopts.check("psql", args)


def test_the_options_given_are_read_as_the_tool_reads_them():
    """What the restore asks of them (--no-owner, --no-acl, --no-tablespaces), bundled or abbreviated too."""
    assert pgopts.given("pg_restore", ["-Ox", "--no-tablesp", "-t", "-1"]) == {"O", "x", "no-tablespaces", "t"}
    assert pgopts.given("pg_restore", ["--no-ac", "-L", "-O"]) == {"x", "L"}
    assert pgopts.given("pg_restore", ["-X"]) == set()


def test_an_abbreviated_compress_is_refused_for_a_plain_dump():
    with pytest.raises(pgopts.RefusedOption, match="--comp=9 .*use encpipe-backup --compress"):
        pgopts.check("pg_dump", ["--comp=9"], plain_dump=True)


_PART = ("a dump of part of a database is not a backup of it (retention would count it as the newest, and a restore "
         "of it gives that part only)")
_PART_HINT = "make it with `pg_dump ... | encpipe seal` into a file outside the backup locations"


@pytest.mark.parametrize("args, named", [
    (["-t", "orders"], "-t (-t, --table)"), (["-torders"], "-torders (-t, --table)"),
    (["-at", "orders"], "-at (-a, --data-only)"), (["-vt", "orders"], "-vt (-t, --table)"),
    (["--table=orders"], "--table=orders (-t, --table)"), (["--table", "orders"], "--table (-t, --table)"),
    (["--table-and-children=orders"], "--table-and-children=orders (--table-and-children)"),
    (["--table-and", "orders"], "--table-and (--table-and-children)"),
    (["-n", "sales"], "-n (-n, --schema)"), (["-nsales"], "-nsales (-n, --schema)"),
    (["--schema=sales"], "--schema=sales (-n, --schema)"),
    (["-a"], "-a (-a, --data-only)"), (["--data-only"], "--data-only (-a, --data-only)"),
    (["--data"], "--data (-a, --data-only)"),
    (["-s"], "-s (-s, --schema-only)"), (["-vs"], "-vs (-s, --schema-only)"),
    (["--schema-only"], "--schema-only (-s, --schema-only)"), (["--schema-o"], "--schema-o (-s, --schema-only)"),
    (["--section=data"], "--section=data (--section)"), (["--sec", "pre-data"], "--sec (--section)"),
    (["-e", "postgis"], "-e (-e, --extension)"), (["--extension=postgis"], "--extension=postgis (-e, --extension)"),
    (["--exte", "postgis"], "--exte (-e, --extension)"),
    (["--filter=selection"], "--filter=selection (--filter)"), (["--filt", "-"], "--filt (--filter)"),
    # pg_dump 18's spellings of -s and -a, and its statistics alone
    (["--no-data"], "--no-data (--no-data)"), (["--no-schema"], "--no-schema (--no-schema)"),
    (["--statistics-only"], "--statistics-only (--statistics-only)"),
    # after exclusions, and after a value like one of them
    (["--exclude-table-data=log", "-N", "audit", "-s"], "-s (-s, --schema-only)"),
    (["-T", "-t", "-t", "orders"], "-t (-t, --table)"),
])
def test_a_dump_of_part_of_the_database_is_refused(args, named):
    """encpipe-backup names its file DB_T... as a backup of the whole database, and
    retention counts it so: `-- -t orders` with --keep-last 1 removed the last full
    backup, and a restore of the latest gave that table only. Before, they passed."""
    with pytest.raises(pgopts.RefusedOption, match="^pg_dump option %s is not allowed: %s$"
                       % (re.escape(named), re.escape(_PART))) as caught:
        pgopts.check("pg_dump", args)
    assert caught.value.hint == _PART_HINT


@pytest.mark.parametrize("args, named", [
    (["--enable-row-security"], "--enable-row-security (--enable-row-security)"),
    (["--enable-row"], "--enable-row (--enable-row-security)"),
])
def test_a_dump_of_the_rows_row_security_shows_is_refused(args, named):
    """pg_dump sets row_security off and fails (`query would be affected by row-level
    security policy`) where the role would see only some rows; --enable-row-security
    dumps the rows its policies show instead. Before, it passed: a backup role that is
    neither superuser nor BYPASSRLS stored, exit 0, a dump with its own rows only of a
    table with a policy, a backup of the whole database by its name and for retention."""
    with pytest.raises(pgopts.RefusedOption, match="^pg_dump option %s is not allowed: %s$"
                       % (re.escape(named), re.escape(_PART))):
        pgopts.check("pg_dump", args)
    pgopts.check("pg_restore", ["--enable-row-security"])  # the restore's: what it restores, not what it dumps


@pytest.mark.parametrize("args, named", [
    (["--extra-float-digits=0"], "--extra-float-digits=0 (--extra-float-digits)"),
    (["--extra-float-digits", "3"], "--extra-float-digits (--extra-float-digits)"),
    (["--extra-f=-15"], "--extra-f=-15 (--extra-float-digits)"),
])
def test_a_dump_that_rounds_floating_point_values_is_refused(args, named):
    """pg_dump keeps every digit of a float by itself; --extra-float-digits 0 or less
    writes them rounded (PostgreSQL's manual: routine dumps made for backup purposes
    should not use it). Before, it passed: `-- --extra-float-digits=0` stored, exit 0,
    0.1 + 0.2 as 0.3 (it is 0.30000000000000004), and a restore gave 0.3."""
    with pytest.raises(pgopts.RefusedOption, match="^pg_dump option %s is not allowed: its dump "
                       % re.escape(named)) as caught:
        pgopts.check("pg_dump", args)
    assert "rounded" in str(caught.value)


def test_an_ambiguous_prefix_of_table_is_refused():
    """`--tab` is --table to pg_dump 15, and ambiguous to 16 and later (--table-and-children)."""
    with pytest.raises(pgopts.RefusedOption, match="^pg_dump option --tab is ambiguous: give it in full$"):
        pgopts.check("pg_dump", ["--tab", "orders"])


def test_pg_restore_and_psql_keep_their_own_selection():
    """Restoring part of a backup is pg_restore's to do: its -t, -n, -a, -s stay."""
    pgopts.check("pg_restore", ["-t", "orders", "-n", "sales", "-a", "--section=data", "-s", "--schema-only"])
    pgopts.check("pg_restore", ["--table=orders", "-at", "x"])


def _help(tool):
    """{long option: takes a value} and {letter: its long option} from the installed tool's --help."""
    text = subprocess.run([os.path.join(_find_bindir(), tool), "--help"], capture_output=True, text=True,
                          check=True).stdout
    longs, letters = {}, {}
    for short, name, eq in re.findall(r"(?:-(\S), )?--([a-z][a-z0-9-]*)(\[?=)?", text):
        if name != "help":  # psql's --help[=options]: a value after = only
            longs[name] = longs.get(name, False) or eq == "="
        if short and name != "help":
            letters[short] = name
    return longs, letters


@pytest.mark.parametrize("tool", ["pg_dump", "pg_restore", "psql"])
def test_every_option_of_the_installed_tool_is_known_as_it_reads_it(tool):
    """pgopts reads the arguments as the tool does: each option of the installed tool's,
    short and long, is in its table, taking a value where the tool's takes one."""
    longs, letters = _help(tool)
    known_letters, known = pgopts._TABLES[tool]
    assert {name: known.get(name, (None, None))[1] for name in longs} == longs
    assert {letter: (known_letters.get(letter), known[name][0]) for letter, name in letters.items()} == \
        {letter: (longs[name], letter) for letter, name in letters.items()}


@pytest.mark.parametrize("tool", ["pg_dump", "pg_restore", "psql"])
def test_every_long_option_of_the_installed_tool_is_judged_by_its_full_name(tool):
    """No option the tool has is refused as another one (an abbreviation of it): a refused
    one names itself."""
    longs, _ = _help(tool)
    wrongly = []
    for name, takes in sorted(longs.items()):
        try:
            pgopts.check(tool, [f"--{name}=VERBOSITY=x" if takes else f"--{name}"])
        except pgopts.RefusedOption as e:
            if not re.search(r"\(([^()]*, )?--%s\)" % re.escape(name), str(e)):
                wrongly.append((name, str(e)))
    assert wrongly == []


_COMMIT_END = ["--", ".encpipe-tmp.20250101T000000Z_1_2", "-db_20250101T000000Z.sql.zst.enc"]
_COMMIT_BASE = ["commit", "--dir=-d", "--database=-db", "--started=1735689600.5", "--kind=sql.zst"]


@pytest.mark.parametrize("words", [
    [],
    ["--to=r:p=x", "--allow-shared-dir", "--metrics-file=--m.prom"],
    ["--keep-last=3", "--keep-daily=7", "--keep-weekly=4", "--keep-monthly=12", "--max-age=90", "--threads=2",
     "--key-file=a", "--key-file=-h", "--key-command=c d", "--identity=i", "--passphrase-file=p",
     "--passphrase-command=q", "--signer=s1", "--signer=s2", "--signer-file=f", "--count-unauthenticated",
     "--globals-temp=g.tmp", "--globals-name=g.enc"],
    ["--keep=2", "--key-file="],
], ids=["plain", "remote", "every-option", "keep"])
def test_a_commit_is_read_as_docopt_reads_it(words):
    from docopt import docopt

    from encpipe.backup import job
    from encpipe.backup.usagetext import for_docopt

    argv = _COMMIT_BASE + words + _COMMIT_END
    assert job.commit_args(argv) == docopt(for_docopt(job.USAGE), argv=argv, default_help=True)


@pytest.mark.parametrize("words", [["--keep-last=3", "--keep-last=4"], ["--globals-temp=g.tmp"],
                                   ["--allow-shared-dir", "--allow-shared-dir"], ["--unknown=x"], ["--to", "r:p"],
                                   ["--allow-shared-dir=yes"]],
                         ids=["twice", "half-pair", "flag-twice", "unknown", "two-words", "flag-value"])
def test_any_other_commit_is_left_to_docopt(words):
    from encpipe.backup import job

    assert job.commit_args(_COMMIT_BASE + words + _COMMIT_END) is None



@pytest.mark.parametrize("args", [["-L", "/dev/stdin"], ["--use-list=/dev/stdin"], ["-L/proc/self/fd/0"],
                                  ["--use-l", "/dev/fd/0"], ["-L", "{dir}"], ["-L", "//dev/./fd/3"]],
                         ids=["L", "use-list", "fd", "prefix", "directory", "unnormal"])
def test_a_list_that_is_no_regular_file_is_refused(args, tmp_path):
    """pg_restore -L /dev/stdin read the rest of the archive (its standard input) as the
    list, selected nothing, and the restore reported success with an empty database."""
    with pytest.raises(pgopts.RefusedOption, match=r"pg_restore option .* \(-L, --use-list\) is not allowed: "
                                                   r"the list must be a regular file"):
        pgopts.check("pg_restore", [a.replace("{dir}", str(tmp_path)) for a in args])


def test_a_descriptors_name_is_refused_where_this_process_has_a_regular_file_there(tmp_path):
    """/dev/stdin names the checking process's standard input, not pg_restore's (the archive)."""
    here = tmp_path / "list"
    here.write_text(";\n")
    with open(here) as stdin:
        done = subprocess.run([sys.executable, "-c", "from encpipe import pgopts\n"
                               "pgopts.check('pg_restore', ['-L', '/dev/stdin'])"], stdin=stdin,
                              capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    assert done.returncode == 1 and "RefusedOption: pg_restore option -L (-L, --use-list)" in done.stderr, done.stderr


def test_a_list_in_a_regular_file_or_none_yet_passes(tmp_path):
    """A list file (pg_restore -l's output) passes; one that is not there is pg_restore's to refuse."""
    listed = tmp_path / "list"
    listed.write_text(";\n")
    pgopts.check("pg_restore", ["-L", str(listed)])
    pgopts.check("pg_restore", ["--use-list", str(tmp_path / "none")])


@pytest.mark.parametrize("row, clause", [
    ({"datlocprovider": "i", "datlocale": "und-x-icu", "daticurules": None},  # PostgreSQL 17 and later
     " LOCALE_PROVIDER icu ICU_LOCALE 'und-x-icu'"),
    ({"datlocprovider": "i", "daticulocale": "und-x-icu", "daticurules": "&a < g"},  # 16: its rules
     " LOCALE_PROVIDER icu ICU_LOCALE 'und-x-icu' ICU_RULES '&a < g'"),
    ({"datlocprovider": "b", "datlocale": "C.UTF-8"},  # 17's builtin provider
     " LOCALE_PROVIDER builtin BUILTIN_LOCALE 'C.UTF-8'"),
    ({"datlocprovider": "c", "datlocale": None}, ""),
])
def test_the_scratch_database_keeps_the_locale_provider_of_every_server_version(row, clause):
    """pg_database's row as PostgreSQL 16 and 17 write it: 17 renamed daticulocale to datlocale
    and added the builtin provider, 16 added ICU rules. Before, a database of a 17 server
    (ICU or builtin) came back as a libc one, and one with ICU rules without them."""
    props = {"encoding": "UTF8", "collate": "C", "ctype": "C", "row": row}
    assert pgprops.create_sql("tmp", props) == (
        "CREATE DATABASE \"tmp\" TEMPLATE template0 ALLOW_CONNECTIONS false ENCODING 'UTF8' LC_COLLATE 'C'"
        " LC_CTYPE 'C'%s;" % clause)


KEY_HEX = "0f" * 32


@pytest.mark.parametrize("tool, args, said", [
    ("pg_dump", ["--set=x=" + KEY_HEX], "option --set=(a raw key, not shown) is unknown"),  # after its second =
    ("pg_dump", ["-" + KEY_HEX], "option -0... (a raw key, not shown) is unknown"),  # pasted after a dash
    ("psql", ["-Z" + KEY_HEX], "option -Z... (a raw key, not shown) is unknown"),  # as a short option's value
    ("pg_dump", ["x=" + KEY_HEX], "argument (a raw key, not shown) is not an option"),
])
def test_a_refused_option_never_shows_a_key_inside_it(tool, args, said):
    """A refusal names the option as given, a key-like value masked: before, a key after a
    second `=` (`--set=x=KEY`), pasted after a dash (`-KEY`, `-ZKEY`) or after `x=` was shown whole."""
    with pytest.raises(pgopts.RefusedOption) as refused:
        pgopts.check(tool, args)
    assert KEY_HEX not in str(refused.value) and f"{tool} {said}" in str(refused.value), str(refused.value)
