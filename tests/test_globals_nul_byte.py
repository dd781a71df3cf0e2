"""A NUL byte in a globals file's role statement cannot hide SQL from pgglobals.

psql reads its input a line at a time with fgets and keeps each piece up to its
first NUL (strlen): the rest of that line, its newline too, never reaches its
lexer. pgglobals read `COMMENT ON ROLE smug_new IS 'a<NUL>'` and, on the next
line, `'; ALTER ROLE mallory SUPERUSER; --';` as one statement of two
string literals (refuse_unplain passed it), where psql read `... IS 'a` and
went on with `'; ALTER ROLE mallory SUPERUSER; --';`: the string closed at the
next line's first quote, and the ALTER ROLE ran as the restoring superuser,
exit 0. pg_dumpall never writes a NUL (PostgreSQL's text holds none): a globals
file with one is refused (65) before anything is touched.
"""

import pytest

from encpipe import pgglobals
from test_globals_encoding_switch import refused_before_anything

HIDDEN = (b"CREATE ROLE smug_new;\nCOMMENT ON ROLE smug_new IS 'a\x00'\n"
          b"'; ALTER ROLE mallory SUPERUSER; --';\n")


def test_sql_behind_a_nul_byte_never_runs(pg, tools, key_file, tmp_path, mallory):
    refused_before_anything(pg, tools, key_file, tmp_path, HIDDEN)


def test_a_globals_file_with_a_nul_byte_is_refused():
    with pytest.raises(pgglobals.Failure) as caught:
        pgglobals.checked(b"SET client_encoding = 'UTF8';\n" + HIDDEN, "g", None, lambda *said: None)
    assert caught.value.status == 65
