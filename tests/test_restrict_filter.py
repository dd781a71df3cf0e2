"""The filter that drops a plain dump's own \\restrict and \\unrestrict lines on the way
to psql (encpipe/pgstream.py): whatever the lines and however the stream is cut into
reads, it drops exactly the lines a line-by-line reading of the whole stream drops:
the opening `\\restrict KEY` (KEY alphanumeric, as pg_dump writes it), when it is the
first line that is neither blank nor an SQL comment, and the lines that are exactly
`\\unrestrict KEY` with that KEY. Any other line passes, one that reads `\\restrict K`
or `\\unrestrict K` inside a function's body, a comment or a string too: dropping those
changed the restored data (tests/test_restore_injection.py)."""

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from encpipe.pgstream import RestrictFilter

OPENING = re.compile(rb"\\restrict ([A-Za-z0-9]{1,256})\r?\n?")
LINES = st.one_of(
    st.sampled_from([b"\\restrict abc", b"\\unrestrict abc", b"\\restrict k", b"\\unrestrict k",
                     b"\\unrestrict abc\r", b"\\unrestrict abcd", b"\\unrestrict ab", b" \\unrestrict abc",
                     b"\\restrict", b"\\unrestrict", b"\\restrict\tk", b"--", b"-- comment", b"-", b"", b"\r",
                     b"\\restrict\r", b"\\restricted x", b"\\unrestricted", b"\\restric", b"x\\restrict k",
                     b" \\restrict k", b"\\N\t1\t\\N", b"\\\\", b"\\", b"\\.", b"COPY t FROM stdin;",
                     b"a\tb\\tc", b"\\! id", b"\\copy t to program 'id'", b"\\restrict k';", b"\\restrict a b",
                     b"\\restrict abc\r", b"\\restrict " + b"k" * 64, b"\\unrestrict " + b"k" * 64,
                     b"\\restrict " + b"k" * 256, b"\\unrestrict " + b"k" * 256, b"\\restrict " + b"k" * 257,
                     b"\\restrict $$", b"\\unrestrict abc ", b"\\restrict \r", b"SET x = 1;"]),
    st.binary(max_size=40),
)


def reference(data):
    """Line by line, over the whole stream."""
    lines = data.split(b"\n")
    lines = [line + b"\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])
    out, closing, opening = [], None, True
    for line in lines:
        if opening and (line.startswith(b"--") or line in (b"\n", b"\r\n")):
            out.append(line)
            continue
        if opening:
            opening, own = False, OPENING.fullmatch(line)
            if own:
                closing = own.group(1)
                continue
        elif closing and re.fullmatch(rb"\\unrestrict " + closing + rb"\r?\n?", line):
            continue
        out.append(line)
    return b"".join(out)


def filtered(data, cuts):
    f, out, pos = RestrictFilter(), [], 0
    for cut in cuts:
        out.append(f.feed(data[pos : pos + cut]))
        pos += cut
    out.append(f.feed(data[pos:]))
    out.append(f.finish())
    return b"".join(out)


@settings(max_examples=3000, deadline=None)
@given(preamble=st.lists(st.sampled_from([b"--", b"-- PostgreSQL database dump", b"", b"\r", b"-"]), max_size=5),
       lines=st.lists(LINES, max_size=30), newline_at_end=st.booleans(),
       cuts=st.lists(st.integers(min_value=0, max_value=30), max_size=40))
def test_the_filter_drops_exactly_the_dumps_own_lines_however_the_stream_is_cut(preamble, lines, newline_at_end, cuts):
    lines = preamble + lines
    data = b"\n".join(lines) + (b"\n" if newline_at_end and lines else b"")
    assert filtered(data, cuts) == reference(data)


def test_a_dump_with_many_lines_and_few_backslashes():
    rows = b"".join(b"%d\t%d\t0\tfiller\n" % (i, i % 7) for i in range(20000))
    data = (b"--\n-- PostgreSQL database dump\n--\n\n\\restrict KEY\n\nSET x = 1;\nCOPY t FROM stdin;\n" + rows
            + b"\\.\n\n--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict KEY\n\n")
    assert filtered(data, [4096] * 200) == (b"--\n-- PostgreSQL database dump\n--\n\n\nSET x = 1;\nCOPY t FROM stdin;\n"
                                            + rows + b"\\.\n\n--\n-- PostgreSQL database dump complete\n--\n\n\n")


def test_lines_of_the_dumps_data_that_read_as_restrict_lines_pass():
    """A function's body, a comment, a string of --inserts: each line as it was."""
    body = (b"CREATE FUNCTION f() RETURNS text AS $b$\n/*\n\\restrict abc\n\\unrestrict abc\n*/\nbegin return 1; end"
            b" $b$;\nCOMMENT ON TABLE d IS 'note:\n\\restrict abc\nend';\nINSERT INTO d VALUES ('line\n\\unrestrict k\nz');\n")
    data = b"-- PostgreSQL database dump\n\n\\restrict KEY\n" + body + b"\\unrestrict KEY\n"
    for cut in (1, 2, 7, 4096):
        assert filtered(data, [cut] * (len(data) // cut + 1)) == b"-- PostgreSQL database dump\n\n" + body
    assert filtered(body, [5] * 100) == body  # a dump without the opening line: nothing dropped


def test_the_closing_line_goes_only_with_the_opening_lines_key():
    data = b"\\restrict KEY\nSELECT 1;\n\\unrestrict OTHER\n\\unrestrict KEY\r\n\\unrestrict KEYS\n\\unrestrict KEY"
    assert filtered(data, [3] * 40) == b"SELECT 1;\n\\unrestrict OTHER\n\\unrestrict KEYS\n"
