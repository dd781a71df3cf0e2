"""spool.private_spool opens what tempfile.TemporaryFile would (an unnamed O_TMPFILE
file, mode 0600, in TMPDIR, TEMP or TMP, else /tmp) without importing tempfile, and
leaves to tempfile every case it cannot do so, in the same directory: one named that
cannot hold the file is 74, never another."""

import os
import stat
import subprocess
import sys

import pytest

from encpipe.errors import IOFailure
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


def test_a_directory_given_comes_first_and_one_that_cannot_hold_the_file_is_74(tmp_path, monkeypatch):
    """A TMPDIR (TEMP, TMP) that names no directory, or one this user cannot write, fails (74),
    as `sort -T` and mktemp do: before, tempfile passed over it to /tmp, which TMPDIR was
    set to keep the spool (a whole backup's ciphertext, a pipe's) out of."""
    given, missing, closed = tmp_path / "given", tmp_path / "missing", tmp_path / "closed"
    given.mkdir()
    closed.mkdir(mode=0o500)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    with private_spool(str(given)) as spool:
        assert _where(spool).startswith(f"{given}/#")
    for where in (missing, closed, tmp_path / "given" / ".." / "missing"):
        monkeypatch.setenv("TMPDIR", str(where))
        if where == closed and os.geteuid() == 0:
            continue  # root writes it all the same
        with pytest.raises(IOFailure) as failed:
            with private_spool():
                pass
        assert str(failed.value).startswith("cannot create a temporary file (TMPDIR): "), failed.value
    for name in ("TMPDIR", "TEMP", "TMP"):  # none set: /tmp
        monkeypatch.delenv(name, raising=False)
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


@pytest.mark.parametrize("argv", [["open", "--verify-first", "--key-file", "KEY"], ["open", "--legacy"]],
                         ids=["verify-first", "legacy"])
def test_a_spooling_open_with_a_tmpdir_that_names_no_directory_is_74_and_writes_nothing(tmp_path, argv):
    """encpipe open from a pipe that spools (--verify-first; a legacy file, checked whole
    first): TMPDIR names no directory. Before, the ciphertext went to /tmp and the run
    went on."""
    key = tmp_path / "key"
    key.write_text("7a" * 32 + "\n")
    key.chmod(0o600)
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": os.environ.get("PYTHONPATH", ""), "TMPDIR": str(tmp_path / "no"),
           "BACKUP_ENCRYPTION_KEY": "7a" * 32}
    sealed = subprocess.run([sys.executable, "-m", "encpipe", "seal", "--key-file", str(key)], input=b"data" * 9999,
                            capture_output=True, env=env, timeout=60, check=True).stdout
    legacy = os.urandom(64) + b"\x01" * 100_000  # as far as the spool: no zero run, a header of random bytes
    done = subprocess.run([sys.executable, "-m", "encpipe", *[str(key) if a == "KEY" else a for a in argv]],
                          input=legacy if "--legacy" in argv else sealed, capture_output=True, env=env, timeout=60)
    assert (done.returncode, done.stdout) == (74, b""), done.stderr
    assert done.stderr.decode().startswith("encpipe: error: cannot create a temporary file (TMPDIR): ")


def test_the_unnamed_spool_can_never_be_given_a_name(tmp_path, monkeypatch):
    """O_EXCL: no linkat(2) of /proc/PID/fd/N can give the spool (ciphertext) a name afterwards."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    with private_spool() as spool:
        spool.write(b"ciphertext")
        spool.flush()
        root = os.open("/", os.O_RDONLY | os.O_CLOEXEC)  # a dir_fd: linkat(2) with AT_SYMLINK_FOLLOW, not link(2)
        try:
            with pytest.raises(FileNotFoundError):
                os.link(f"/proc/self/fd/{spool.fileno()}", tmp_path / "named", src_dir_fd=root, follow_symlinks=True)
        finally:
            os.close(root)
    assert os.listdir(tmp_path) == []
