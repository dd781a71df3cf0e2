"""The guards of the shared-directory and key-place checks (writers, pathwalk,
safefile, keyplace, dirlock, backup.localstore), each broken by hand once with no
test failing: the tests that now see each. Run as root: the places belong to, or
are writable by, user postgres (or a group it is a member of)."""

import errno
import grp
import os
import pwd
import struct

import pytest

from cliutil import KEY_A, assert_one_line_error, run_process
from encpipe import writers
from encpipe.errors import IOFailure

DATA = b"the data\n" * 100
KEY_ENV = {"ENCPIPE_KEY": KEY_A}
POSTGRES = (pwd.getpwnam("postgres").pw_uid, pwd.getpwnam("postgres").pw_gid)
ANY = 0xFFFFFFFF

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="another user (postgres) writes the places")


def set_acl(path, *named):
    """An access ACL on `path`: user::rwx, the `named` (tag, perm, id) entries, group::r-x, mask::rwx, other::r-x."""
    entries = sorted([(0x01, 7, ANY), *named, (0x04, 5, ANY), (0x10, 7, ANY), (0x20, 5, ANY)],
                     key=lambda entry: (entry[0], entry[2]))  # the kernel wants them by tag, then id
    os.setxattr(path, "system.posix_acl_access",
                struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *entry) for entry in entries))


def seal_into(directory):
    return run_process(["seal", "-o", os.path.join(directory, "b.enc")], DATA, KEY_ENV)


def refused_73(done, *phrases):
    assert (done.returncode, done.stdout) == (73, b""), done.stderr
    assert_one_line_error(done.stderr)
    for phrase in phrases:
        assert phrase.encode() in done.stderr, done.stderr


def test_an_acl_entry_without_w_lets_nobody_write_but_one_with_w_does(tmp_path):
    """Only an ACL entry's w bit makes a writer: user:postgres:r-x (mask rwx) is accepted, user:postgres:-wx refused."""
    reads = tmp_path / "reads"
    reads.mkdir(mode=0o755)
    set_acl(reads, (0x02, 5, POSTGRES[0]))
    assert os.stat(reads).st_mode & 0o777 == 0o775
    done = seal_into(reads)
    assert done.returncode == 0, done.stderr
    writes = tmp_path / "writes"
    writes.mkdir(mode=0o755)
    set_acl(writes, (0x02, 3, POSTGRES[0]))
    refused_73(seal_into(writes), f"{writes} can be written by user postgres (its ACL, mode g+w)")
    assert os.listdir(writes) == []


def test_a_group_an_acl_lets_write_is_refused(tmp_path):
    """A named group entry with w in a directory's ACL (group:postgres:rwx) makes the group its writer (73)."""
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    set_acl(shared, (0x08, 7, POSTGRES[1]))
    assert os.stat(shared).st_gid == 0
    refused_73(seal_into(shared), f"{shared} can be written by group postgres (its ACL, mode g+w)")
    assert os.listdir(shared) == []


def test_a_group_whose_members_are_listed_only_in_etc_group_is_not_trusted(tmp_path, monkeypatch):
    """g+w for a group that is no user's own but lists postgres as a member (as ssl-cert does) names that group."""
    own = {entry.pw_gid for entry in pwd.getpwall()}
    gid = next(g for g in range(54321, 60000) if g not in own and g not in {e.gr_gid for e in grp.getgrall()})
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chown(shared, 0, gid)
    os.chmod(shared, 0o770)
    real = grp.getgrgid
    monkeypatch.setattr(grp, "getgrgid", lambda g: grp.struct_group(("certs", "x", gid, ["postgres"])) if g == gid
                        else real(g))
    assert writers.other_writer(os.stat(shared), where=str(shared)) == "group certs (mode g+w, not sticky)"


def test_an_acl_that_cannot_be_read_fails_closed(tmp_path, monkeypatch):
    """An error reading a g+w directory's ACL (other than none there) is IOFailure (74), not "no other writer"."""
    def broken(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "getxattr", broken)
    with pytest.raises(IOFailure, match="cannot examine .*: Input/output error"):
        writers._acl_writer(str(tmp_path), {0})



def test_seal_o_into_a_fifo_in_a_directory_others_can_write_is_refused(tmp_path):
    """`seal -o FIFO` (written into, not replaced) is refused too (73) when another user can write the FIFO's directory."""
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    fifo = shared / "pipe"
    os.mkfifo(fifo, 0o600)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a writer that gets through never blocks
    try:
        done = run_process(["seal", "-o", str(fifo)], DATA, KEY_ENV, timeout=60)
        refused_73(done, f"{shared} can be written by every user (mode o+w, not sticky); refusing to write in it")
        try:
            written = os.read(reader, 1)
        except BlockingIOError:
            written = b""
        assert written == b""
    finally:
        os.close(reader)


def test_rewrap_in_place_of_a_fifo_is_refused_as_not_a_regular_file(tmp_path):
    """`rewrap --in-place FIFO` is refused (66, `is not a regular file`) before it reads anything from it."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo, 0o600)
    done = run_process(["rewrap", "--in-place", str(fifo)], b"", KEY_ENV, timeout=60)
    assert (done.returncode, done.stdout) == (66, b""), done.stderr
    assert_one_line_error(done.stderr)
    assert done.stderr.decode().rstrip("\n").endswith(f"{fifo} is not a regular file"), done.stderr


def test_seal_o_to_a_symbolic_link_says_so_and_how_to_go_on(tmp_path):
    """`seal -o LINK` is refused (74) as a symbolic link, with the hint to give the file's own path (not as ELOOP)."""
    target = tmp_path / "real.enc"
    target.write_bytes(b"kept\n")
    link = tmp_path / "link.enc"
    link.symlink_to(target)
    done = run_process(["seal", "-o", str(link)], DATA, KEY_ENV)
    assert (done.returncode, done.stdout) == (74, b""), done.stderr
    assert done.stderr.decode() == (f"encpipe: error: {link} is a symbolic link; refusing to write through it\n"
                                    "encpipe: hint: give the path of the file itself\n")
    assert target.read_bytes() == b"kept\n"


def test_a_metrics_file_two_missing_directories_deep_is_named_by_its_own_directory(tmp_path):
    """encpipe-check names the metrics file's own (missing) directory, not the first missing one, above the writer it found."""
    from test_check_metrics_place import _check, _place

    prom, _ = _place(tmp_path)
    deep = tmp_path / "m" / "n" / "encpipe.prom"
    prom.unlink()
    os.rmdir(tmp_path / "m")
    tmp_path.chmod(0o1777)
    assert _check(tmp_path, deep) == (2, f"CRITICAL: cannot read the metrics file: {tmp_path} (above "
                                         f"{tmp_path / 'm' / 'n'}) can be written by every user (mode o+w), who could "
                                         f"hide a failed backup\n")


def test_a_hidden_file_swapped_just_before_the_rename_leaves_the_old_file_in_place(tmp_path):
    """A link put in the hidden file's place before the rename is never renamed over FILE (75, FILE as it was) nor removed."""
    from shared_dir import Victim, shared_directory, swap_env

    directory = shared_directory(tmp_path / "shared")
    victim = Victim(tmp_path / "victim")
    path = os.path.join(directory, "b.enc")
    with open(path, "wb") as f:
        f.write(b"the old file\n")
    marker, env = swap_env(tmp_path, victim, "renaming", "temp")
    done = run_process(["seal", "--allow-shared-dir", "-o", path], DATA, {**KEY_ENV, **env})
    assert marker.exists(), "the swap did not happen"
    assert (done.returncode, done.stdout) == (75, b""), done.stderr
    assert_one_line_error(done.stderr)
    assert b"was replaced while it was written" in done.stderr, done.stderr
    assert not os.path.islink(path)
    with open(path, "rb") as f:
        assert f.read() == b"the old file\n"
    swapped = marker.read_text().split()[1]  # "renaming PATH": not the file it made, so not its to remove
    assert os.readlink(swapped) == victim.path
    victim.assert_untouched()



@pytest.mark.parametrize("planted", ["link", "file"])
def test_a_name_planted_at_the_hidden_name_is_never_written_through(tmp_path, monkeypatch, planted):
    """The hidden file is made with O_CREAT|O_EXCL|O_NOFOLLOW: a link or file at its (guessed) name fails the write, untouched."""
    from encpipe import safefile
    from shared_dir import Victim, shared_directory

    directory = shared_directory(tmp_path / "shared")
    victim = Victim(tmp_path / "victim", mode=0o640)
    monkeypatch.setattr(os, "urandom", lambda n: b"\x01" * n)
    hidden = os.path.join(directory, safefile.TEMP_PREFIX + "01" * 8)
    if planted == "link":
        os.symlink(victim.path, hidden)
    else:  # another user's file, which they could still read, or hold open, once it was FILE
        Victim(hidden, mode=0o666)
        os.chown(hidden, *POSTGRES)
    before = os.lstat(hidden)
    with pytest.raises(IOFailure, match="cannot create a temporary file in .*: File exists"):
        safefile.write_atomically(os.path.join(directory, "b.enc"), lambda out: out.write(b"the new bytes"),
                                  allow_shared=True)
    victim.assert_untouched()
    assert not os.path.exists(os.path.join(directory, "b.enc"))
    assert os.lstat(hidden) == before


def test_a_device_another_user_owns_is_refused_as_a_key_file(tmp_path):
    """A character device given as a key file is judged by its owner: postgres's is refused (73), root's 0666 one is not."""
    device = tmp_path / "null"
    os.mknod(device, 0o600 | 0o020000, os.makedev(1, 3))  # S_IFCHR: /dev/null's numbers
    os.chown(device, *POSTGRES)
    done = run_process(["seal", "--key-file", str(device)], DATA)
    refused_73(done, f"--key-file {device}: the file itself can be written by user postgres (its owner); "
                     "refusing to read a key from it")
    os.chown(device, 0, 0)
    os.chmod(device, 0o666)  # writing a device replaces nothing: its mode is not judged
    done = run_process(["seal", "--key-file", str(device)], DATA)
    assert done.returncode != 73 and b"refusing to read a key" not in done.stderr, done.stderr


def test_a_key_file_reached_through_a_link_is_named_by_where_it_is(tmp_path):
    """A key file reached through a (trusted) link that postgres can write is named as `the file it leads to, REAL,`."""
    real = tmp_path / "real.key"
    real.write_text(KEY_A + "\n")
    os.chmod(real, 0o620)
    os.chown(real, 0, POSTGRES[1])
    link = tmp_path / "backup.key"
    link.symlink_to(real)
    refused_73(run_process(["seal", "--key-file", str(link)], DATA),
               f"--key-file {link}: the file it leads to, {real}, can be written by group postgres (mode g+w); "
               "refusing to read a key from it")
    refused_73(run_process(["seal", "--key-file", str(real)], DATA),
               f"--key-file {real}: the file itself can be written by group postgres (mode g+w); refusing")


def test_a_backup_directory_replaced_after_it_was_opened_is_changed_not_pruned(tmp_path):
    """refuse_led_elsewhere: DIR's name leading to another directory than the one opened is Changed (75)."""
    from encpipe.backup.localstore import Local
    from encpipe.errors import Changed

    directory = tmp_path / "b"
    directory.mkdir(mode=0o700)
    store = Local(str(directory))
    store.refuse_led_elsewhere(False, "prune")  # the one opened: nothing to say
    os.rename(directory, tmp_path / "old")
    directory.mkdir(mode=0o700)
    with pytest.raises(Changed, match=f"^{directory} changed while it was opened$"):
        store.refuse_led_elsewhere(False, "prune")


def test_a_file_listed_then_swapped_for_a_link_is_changed_and_its_target_never_opened(tmp_path):
    """A name listed as a regular file, then a link to a FIFO, is `changed since it was listed` (O_NOFOLLOW): the FIFO is not opened."""
    from encpipe.backup.localstore import Local

    directory = tmp_path / "b"
    directory.mkdir(mode=0o700)
    (directory / "x.enc").write_bytes(b"listed\n")
    store = Local(str(directory))
    (item,) = store.list()
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo, 0o600)
    os.unlink(directory / "x.enc")
    os.symlink(fifo, directory / "x.enc")
    with pytest.raises(OSError, match="^x.enc changed since it was listed$"):
        store.open(item)


def test_take_back_removes_only_the_very_file_renamed(tmp_path):
    """Local.take_back leaves a file put under the final name since the rename (another inode): only its own is removed."""
    from encpipe.backup.localstore import Local

    directory = tmp_path / "b"
    directory.mkdir(mode=0o700)
    store = Local(str(directory))
    (directory / "x.enc").write_bytes(b"renamed\n")
    renamed = os.lstat(directory / "x.enc")
    os.unlink(directory / "x.enc")
    (directory / "x.enc").write_bytes(b"another's\n")
    store.take_back("x.enc", renamed)
    assert (directory / "x.enc").read_bytes() == b"another's\n"
    os.unlink(directory / "x.enc")
    (directory / "x.enc").write_bytes(b"renamed\n")
    store.take_back("x.enc", os.lstat(directory / "x.enc"))  # the very file: removed
    assert os.listdir(directory) == []
