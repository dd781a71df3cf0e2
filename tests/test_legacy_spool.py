"""The second pass of `open --legacy` reads the spooled copy back: each block must be
the one the first pass authenticated before its plaintext leaves, as v2's second
pass checks each record against its witness (a spool changed between the passes,
by a disk that returns other bytes or by anyone who can write it)."""

import io

import pytest

from fuzz.fuzz_encpipe import Pipe

from encpipe import cli, legacy
from encpipe.errors import InvalidStream

DUMP = b"--\n-- PostgreSQL database dump\n--\n\nSET statement_timeout = 0;\n" + b"-- filler\n" * 300_000
EVIL = b"\\! id > /tmp/pwned\n"
AT = legacy.BUFFER_SIZE + 4096  # in the second block: the first leaves untouched
KEY = legacy.key_from_setting("k")


def sealed():
    out = io.BytesIO()
    legacy.seal_legacy(io.BytesIO(DUMP), out, KEY.key)
    return out.getvalue()


def flip(spool):
    """GCM is malleable: EVIL where the dump had its bytes at AT."""
    spool.seek(AT)
    old = spool.read(len(EVIL))
    spool.seek(AT)
    spool.write(bytes(a ^ b ^ c for a, b, c in zip(old, DUMP[AT:], EVIL)))


def cut(spool):
    spool.truncate(AT)


def appended(spool):
    spool.seek(0, io.SEEK_END)
    spool.write(b"\x01" * 100)


@pytest.fixture(params=[flip, cut, appended])
def spool_changed(request, monkeypatch):
    """The spool, changed once the first pass ended (as it is rewound): the output
    the blocks before the first that changed (the last, longer, when appended to)."""
    real = legacy.rewind

    def rewind(spool):
        real(spool)
        request.param(spool)
        real(spool)

    monkeypatch.setattr(legacy, "rewind", rewind)
    blocks_before = len(DUMP) // legacy.BUFFER_SIZE if request.param is appended else 1
    return DUMP[: blocks_before * legacy.BUFFER_SIZE]


def test_a_spool_changed_between_the_passes_lets_out_no_changed_byte(spool_changed):
    out = io.BytesIO()
    with pytest.raises(InvalidStream, match="changed"):
        legacy.open_legacy(Pipe(sealed()), out, [KEY])
    assert EVIL not in out.getvalue()
    assert out.getvalue() == spool_changed  # blocks that authenticated, as they did


def test_open_legacy_on_a_spool_changed_is_65(spool_changed):
    out, err = io.BytesIO(), io.StringIO()
    status = cli.main(["open", "--legacy"], stdin=Pipe(sealed()), stdout=out, stderr=err,
                      env={"BACKUP_ENCRYPTION_KEY": "k"})
    assert status == 65
    assert out.getvalue() == spool_changed
    assert len(err.getvalue().splitlines()) == 1 and "changed" in err.getvalue()
