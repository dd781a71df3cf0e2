"""The filter that drops a plain dump's own \\restrict and \\unrestrict lines on the way
to psql (encpipe/pgstream.py): whatever the lines and however the stream is cut into
reads, it drops exactly the lines a line-by-line reading of the whole stream drops:
those that are exactly `\\restrict KEY` or `\\unrestrict KEY`, KEY alphanumeric, as
pg_dump writes them; not a line that only starts so (tests/test_restore_injection.py)."""

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from encpipe.pgstream import RestrictFilter

OWN = re.compile(rb"\\(?:un)?restrict [A-Za-z0-9]{1,256}\r?")
LINES = st.one_of(
    st.sampled_from([b"\\restrict abc", b"\\unrestrict abc", b"\\restrict", b"\\unrestrict", b"\\restrict\tk",
                     b"\\restrict\r", b"\\restricted x", b"\\unrestricted", b"\\restric", b"x\\restrict k",
                     b" \\restrict k", b"\\N\t1\t\\N", b"\\\\", b"\\", b"\\.", b"", b"COPY t FROM stdin;",
                     b"a\tb\\tc", b"\\! id", b"\\copy t to program 'id'", b"\\restrict k';", b"\\restrict a b",
                     b"\\restrict abc\r", b"\\restrict " + b"k" * 64, b"\\unrestrict " + b"k" * 256,
                     b"\\restrict " + b"k" * 257, b"\\restrict $$", b"\\unrestrict abc ", b"\\restrict \r"]),
    st.binary(max_size=40),
)


def reference(data):
    lines = data.split(b"\n")
    lines = [line + b"\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])
    return b"".join(line for line in lines if not OWN.fullmatch(line.rstrip(b"\n")))


def filtered(data, cuts):
    f, out, pos = RestrictFilter(), [], 0
    for cut in cuts:
        out.append(f.feed(data[pos : pos + cut]))
        pos += cut
    out.append(f.feed(data[pos:]))
    out.append(f.finish())
    return b"".join(out)


@settings(max_examples=2000, deadline=None)
@given(lines=st.lists(LINES, max_size=30), newline_at_end=st.booleans(),
       cuts=st.lists(st.integers(min_value=0, max_value=30), max_size=40))
def test_the_filter_drops_exactly_the_restrict_lines_however_the_stream_is_cut(lines, newline_at_end, cuts):
    data = b"\n".join(lines) + (b"\n" if newline_at_end and lines else b"")
    assert filtered(data, cuts) == reference(data)


def test_a_dump_with_many_lines_and_few_backslashes():
    rows = b"".join(b"%d\t%d\t0\tfiller\n" % (i, i % 7) for i in range(20000))
    data = b"\\restrict KEY\nSET x = 1;\nCOPY t FROM stdin;\n" + rows + b"\\.\n\\unrestrict KEY\n"
    assert filtered(data, [4096] * 200) == b"SET x = 1;\nCOPY t FROM stdin;\n" + rows + b"\\.\n"
