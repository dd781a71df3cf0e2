"""The filter that drops a plain dump's own \\restrict and \\unrestrict lines must not
change how psql reads the rest. A role that may only create tables and comment on
them writes a comment whose second line starts with `\\restrict k';`: a filter that
drops every line starting with \\restrict also drops that line's closing quote, the
string then runs on into the next comment, and the text of that comment, which its
author chose, runs as SQL as the restoring superuser: here `COPY ... TO PROGRAM`, a
shell command on the database server, which no rollback undoes. Only lines that are
exactly pg_dump's own (`\\restrict KEY`, KEY alphanumeric, first, and `\\unrestrict KEY`
with that KEY) may go: a line of the data that reads `\\restrict K` stays.
"""

import secrets
from pathlib import Path

import pytest

from test_backup_restore import (
    backup,
    dump,
    restore,
)

SOURCE, COPY = "inject_source", "inject_copy"


def test_a_comment_cannot_inject_sql_into_a_restore(pg, tools, key_file, tmp_path):
    marker = Path("/tmp") / ("encpipe-inject-" + secrets.token_hex(8))  # the server's user can write there
    pg.dropdb(SOURCE)
    pg.dropdb(COPY)
    pg.psql("DROP ROLE IF EXISTS mallory; CREATE ROLE mallory LOGIN")
    pg.createdb(SOURCE)
    pg.psql("ALTER DATABASE %s OWNER TO mallory" % SOURCE)
    pg.psql("SET ROLE mallory; "
            "CREATE TABLE public.t1 (id integer); CREATE TABLE public.t2 (id integer); "
            "COMMENT ON TABLE public.t1 IS E'x\\n\\\\restrict k'; "
            "COMMENT ON TABLE public.t2 IS '; COPY (SELECT 1) TO PROGRAM $q$touch %s$q$; --';" % marker, db=SOURCE)
    path, _ = backup(pg, tools, str(tmp_path / "b"), SOURCE, "--no-globals", "--compress", "none",
                     "--key-file", key_file)
    proc = restore(pg, tools, path, COPY, "--no-globals", "--key-file", key_file)
    try:
        assert not marker.exists(), proc.stderr.decode()
        assert proc.returncode == 0, proc.stderr.decode()
        assert dump(pg, COPY) == dump(pg, SOURCE)
    finally:
        if marker.exists():
            marker.unlink()
        pg.dropdb(COPY)
        pg.dropdb(SOURCE)


DATA_THAT_READS_AS_RESTRICT_LINES = r"""
CREATE FUNCTION public.f() RETURNS text LANGUAGE plpgsql AS $b$
begin
/*
\restrict abc
\unrestrict abc
*/
return 'ok';
end $b$;
CREATE TABLE public.d (t text);
INSERT INTO public.d VALUES (E'line\n\\restrict k\nz'), (E'\\unrestrict k');
COMMENT ON TABLE public.d IS E'note:\n\\restrict abc\nend';
CREATE VIEW public.v AS SELECT E'a\n\\unrestrict xyz\nb'::text AS c;
"""


@pytest.mark.parametrize("fmt, extra", [("plain", ("--inserts",)), ("custom", ())])
def test_lines_of_the_data_that_read_as_restrict_lines_are_restored(pg, tools, key_file, tmp_path, fmt, extra):
    """A function's body, a comment, a view and rows (--inserts: their newlines as they
    are) holding lines `\\restrict abc` and `\\unrestrict k`: restored as they were. The
    filter dropped every such line, and the restore said 0."""
    pg.dropdb(SOURCE)
    pg.dropdb(COPY)
    pg.createdb(SOURCE)
    pg.psql(DATA_THAT_READS_AS_RESTRICT_LINES, db=SOURCE)
    path, _ = backup(pg, tools, str(tmp_path / "b"), SOURCE, "--no-globals", "--format", fmt, "--key-file", key_file,
                     pg_dump_options=extra)
    proc = restore(pg, tools, path, COPY, "--no-globals", "--key-file", key_file)
    try:
        assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
        assert dump(pg, COPY) == dump(pg, SOURCE)
        assert b"\n\\restrict abc\n" in dump(pg, COPY)
        said = pg.psql("SELECT md5(prosrc) FROM pg_proc WHERE proname = 'f'; SELECT md5(string_agg(t, ',' ORDER BY t))"
                       " FROM public.d; SELECT md5(obj_description('public.d'::regclass)); SELECT md5(c) FROM public.v",
                       db=COPY)
        assert said == pg.psql("SELECT md5(prosrc) FROM pg_proc WHERE proname = 'f'; SELECT md5(string_agg(t, ','"
                               " ORDER BY t)) FROM public.d; SELECT md5(obj_description('public.d'::regclass));"
                               " SELECT md5(c) FROM public.v", db=SOURCE)
    finally:
        pg.dropdb(COPY)
        pg.dropdb(SOURCE)
