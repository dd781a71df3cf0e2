"""pgsaid.ClientSaid: the restore client's standard error passed on byte for byte, and
read on the way for what a failed restore's hint needs (a tablespace missing)."""

import os
import threading

from encpipe.pgsaid import ClientSaid


def _said(data):
    """(what was passed on, the ClientSaid) once `data` was written as the client's stderr."""
    out_read, out_write = os.pipe()
    said = ClientSaid(out_write)
    written = os.fdopen(os.dup(said.fd), "wb")
    said.started()
    got = []
    reader = threading.Thread(target=lambda: got.append(os.fdopen(out_read, "rb").read()))
    reader.start()
    with written:
        written.write(data)
    said.wait()
    os.close(out_write)
    reader.join()
    return got[0], said


def test_every_byte_is_passed_on_as_the_client_wrote_it():
    data = b"psql:<stdin>:3: ERROR:  22012\n\xff\xfe not UTF-8\r\nno newline at the end"
    passed, said = _said(data)
    assert passed == data
    assert (said.codes, said.tablespaces) == ({"22012"}, set())
    assert not said.tablespace_failed(["ts_fast"])


def test_a_quiet_error_a_missing_tablespace_gives_is_one():
    for code in ("22023", "42704"):
        _, said = _said(b"psql:<stdin>:25: ERROR:  %s\n" % code.encode())
        assert said.tablespace_failed(["ts_fast"]) and not said.tablespace_failed([])


def test_a_whole_message_names_the_tablespace():
    _, said = _said(b'psql:<stdin>:1: ERROR:  invalid value for parameter "default_tablespace": "ts \\"q\\""\n'
                    b'DETAIL:  Tablespace "ts "q"" does not exist.\n'
                    b'pg_restore: error: ... ERROR:  tablespace "other" does not exist\n')
    assert said.tablespaces == {'ts "q"', "other"}
    assert said.tablespace_failed(['ts "q"']) and not said.tablespace_failed(["ts_fast"])


def test_a_long_line_is_read_by_its_start_only():
    _, said = _said(b"x" * (1 << 20) + b' tablespace "late" does not exist\n'
                    b'DETAIL:  Tablespace "next" does not exist.')
    assert said.tablespaces == {"next"}
