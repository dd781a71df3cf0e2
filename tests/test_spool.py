"""spool.private_spool opens what tempfile.TemporaryFile would (an unnamed O_TMPFILE
file, mode 0600, in TMPDIR, TEMP or TMP, else /tmp) without importing tempfile, and
leaves to tempfile every case it cannot do so: the same directory either way."""

import os
import stat

import pytest

from encpipe.spool import private_spool


def _where(spool):
    return os.readlink(f"/proc/self/fd/{spool.fileno()}")


@pytest.mark.parametrize("variable", ["TMPDIR", "TEMP", "TMP"])
def test_an_unnamed_file_in_the_first_temporary_directory_set(tmp_path, monkeypatch, variable):
    for name in ("TMPDIR", "TEMP", "TMP"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, str(tmp_path))
    with private_spool() as spool:
        spool.write(b"ciphertext")
        spool.seek(0)
        assert spool.read() == b"ciphertext"
        assert _where(spool).startswith(f"{tmp_path}/#") and _where(spool).endswith(" (deleted)")
        assert stat.S_IMODE(os.fstat(spool.fileno()).st_mode) == 0o600 and os.fstat(spool.fileno()).st_nlink == 0
        assert not os.get_inheritable(spool.fileno())
    assert os.listdir(tmp_path) == []


def test_a_directory_given_comes_first_and_one_that_fails_is_tempfiles_to_judge(tmp_path, monkeypatch):
    given, missing = tmp_path / "given", tmp_path / "missing"
    given.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    with private_spool(str(given)) as spool:
        assert _where(spool).startswith(f"{given}/#")
    monkeypatch.setenv("TMPDIR", str(missing))  # tempfile passes over it to /tmp, as it did before
    with private_spool() as spool:
        assert os.path.dirname(_where(spool)) == "/tmp"


def test_a_temporary_directory_reached_by_a_symbolic_link_holds_an_unnamed_file(tmp_path, monkeypatch):
    """TMPDIR a link to a directory (as /tmp on some systems): the spool is the unnamed
    O_TMPFILE file in the directory it leads to, never a named one (tempfile's fallback,
    with O_NOFOLLOW refusing the link, created a name there, then unlinked it)."""
    real, link = tmp_path / "real", tmp_path / "link"
    real.mkdir()
    link.symlink_to(real)
    monkeypatch.setenv("TMPDIR", str(link))
    with private_spool() as spool:
        assert _where(spool).startswith(f"{real}/#") and os.fstat(spool.fileno()).st_nlink == 0
        assert not os.get_inheritable(spool.fileno())
