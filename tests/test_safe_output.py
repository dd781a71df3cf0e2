"""`seal -o` and `rewrap --in-place` in directories other users can write.

Run as root in a directory another user can write, a symbolic link swapped in
at any step (for the hidden new file or for the final name) must never make
encpipe write, chmod or chown a file outside the directory: it either fails
(non-zero, the victim untouched) or the swap has no effect. Without
--allow-shared-dir such a directory is refused (73). And `seal -o EXISTING`
never damages EXISTING when it fails.
"""

import os
import resource
import signal
import subprocess

import pytest

from cliutil import KEY_A, KEY_B, assert_one_line_error, run_process, write_secret
from fuzz.craft import command, clean_env
from shared_dir import STEPS, Victim, shared_directory, swap_env

DATA = os.urandom(100_000)
KEY_ENV = {"ENCPIPE_KEY": KEY_A}

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the attacks need root (the victim is root's)")


def sealed(key=KEY_A):
    done = run_process(["seal"], DATA, {"ENCPIPE_KEY": key})
    assert done.returncode == 0, done.stderr
    return done.stdout


def opens(path, key=KEY_A):
    done = run_process(["open", str(path)], env={"ENCPIPE_KEY": key})
    return done.returncode == 0 and done.stdout == DATA


# --- the directory check --------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o757])
def test_a_directory_others_can_write_is_refused(tmp_path, mode):
    directory = shared_directory(tmp_path / "shared", mode)
    os.chown(directory, 0, 104)  # group postgres: user postgres can write it
    out = os.path.join(directory, "b.enc")
    done = run_process(["seal", "-o", out], DATA, KEY_ENV)
    assert (done.returncode, done.stdout) == (73, b"")
    assert_one_line_error(done.stderr)
    assert b"can be written by" in done.stderr and b"--allow-shared-dir" in done.stderr
    assert os.listdir(directory) == []
    allowed = run_process(["seal", "--allow-shared-dir", "-o", out], DATA, KEY_ENV)
    assert allowed.returncode == 0, allowed.stderr
    assert opens(out)


def test_a_directory_owned_by_another_user_is_refused_even_if_not_writable_by_others(tmp_path):
    directory = shared_directory(tmp_path / "pg", 0o700)
    os.chown(directory, 101, 104)  # postgres
    path = os.path.join(directory, "b.enc")
    with open(path, "wb") as f:
        f.write(sealed())
    keyfile = write_secret(tmp_path / "b.key", KEY_B)
    done = run_process(["rewrap", "--in-place", path, "--add-key-file", keyfile], env=KEY_ENV)
    assert done.returncode == 73, done.stderr
    assert b"user postgres (its owner)" in done.stderr
    assert opens(path)


def test_a_sticky_directory_and_ones_own_directory_are_accepted(tmp_path):
    for name, mode in (("sticky", 0o1777), ("own", 0o700), ("public", 0o755)):
        out = os.path.join(shared_directory(tmp_path / name, mode), "b.enc")
        done = run_process(["seal", "-o", out], DATA, KEY_ENV)
        assert done.returncode == 0, done.stderr
        assert opens(out)


def test_an_ancestor_others_can_write_is_refused(tmp_path):
    shared_directory(tmp_path / "shared", 0o777)
    inner = shared_directory(tmp_path / "shared" / "inner", 0o700)
    done = run_process(["seal", "-o", os.path.join(inner, "b.enc")], DATA, KEY_ENV)
    assert done.returncode == 73, done.stderr
    assert b"(above " in done.stderr


# --- symbolic links swapped in at each step ---------------------------------------------------


@pytest.mark.parametrize("command", [["seal", "-o"], ["keygen", "-o"]])
@pytest.mark.parametrize("link_is", ["another's", "in a directory others can write"])
def test_a_symbolic_link_on_the_way_that_another_user_can_point_elsewhere_is_refused(tmp_path, command, link_is):
    """The directory check judged only where the path really led: a link another user
    owns, or one in a directory every user can write, passed when it pointed at a safe
    directory, and its owner could swap it for one of their own between the check and
    the write (24 keys of 150 `keygen -o` landed so). The link is judged, as a key
    file's way is (73)."""
    safe = tmp_path / "safe"
    safe.mkdir(mode=0o700)
    holder = tmp_path / "holder"
    holder.mkdir(mode=0o755 if link_is == "another's" else 0o777)
    os.chmod(holder, 0o755 if link_is == "another's" else 0o777)
    link = holder / "l"
    link.symlink_to(safe)
    if link_is == "another's":
        os.chown(link, 12345, 12345, follow_symlinks=False)
    done = run_process([*command, str(link / "k")], DATA if command[0] == "seal" else b"", KEY_ENV)
    assert (done.returncode, done.stdout) == (73, b""), done.stderr
    assert_one_line_error(done.stderr)
    expected = (b"the symbolic link %s can be written by user 12345 (its owner)" % bytes(link)
                if link_is == "another's" else b"%s, holding the symbolic link %s, can be written by every user"
                % (bytes(holder), bytes(link)))
    assert expected in done.stderr, done.stderr
    assert os.listdir(safe) == []
    done = run_process([*command, str(link / "k"), "--allow-shared-dir"], DATA if command[0] == "seal" else b"",
                       KEY_ENV)
    assert done.returncode == 0, done.stderr
    assert os.listdir(safe) == ["k"]


def test_a_link_only_the_caller_and_root_can_change_is_taken(tmp_path):
    safe = tmp_path / "safe"
    safe.mkdir(mode=0o700)
    (tmp_path / "l").symlink_to(safe)
    done = run_process(["seal", "-o", str(tmp_path / "l" / "k")], DATA, KEY_ENV)
    assert (done.returncode, done.stdout) == (0, b""), done.stderr
    assert opens(safe / "k")


@pytest.mark.parametrize("what", ["temp", "final"])
@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("command", ["seal -o", "rewrap --in-place"])
def test_swap_at_each_step(tmp_path, command, step, what):
    """Either the command fails (74/75, one error line) or the swap had no effect:
    the file is the complete new one. The victim never changes."""
    directory = shared_directory(tmp_path / "shared")
    victim = Victim(tmp_path / "victim", mode=0o640)  # not the 0600 a new file gets: a chmod through a link shows
    path = os.path.join(directory, "b.enc")
    if command == "seal -o":
        args, stdin, key = ["seal", "--allow-shared-dir", "-o", path], DATA, KEY_A
    else:
        with open(path, "wb") as f:
            f.write(sealed())
        keyfile = write_secret(tmp_path / "b.key", KEY_B)
        args, stdin, key = ["rewrap", "--allow-shared-dir", "--in-place", path, "--add-key-file", keyfile], b"", KEY_B
    marker, env = swap_env(tmp_path, victim, step, what)
    done = run_process(args, stdin, {**KEY_ENV, **env})
    assert marker.exists(), "the swap did not happen"
    victim.assert_untouched()
    if done.returncode == 0:
        assert opens(path, key)
    else:
        assert done.returncode in (74, 75) and done.stdout == b""
        assert_one_line_error(done.stderr)


def test_seal_o_through_a_planted_symbolic_link_is_refused(tmp_path):
    """The backup-as-root attack: the attacker replaces the name seal -o is to write
    (encpipe-backup's mktemp file) with a link to a root-only file."""
    directory = shared_directory(tmp_path / "shared")
    victim = Victim(tmp_path / "victim")
    out = os.path.join(directory, ".encpipe-tmp.XXXX")
    os.symlink(victim.path, out)
    done = run_process(["seal", "--allow-shared-dir", "-o", out], DATA, KEY_ENV)
    victim.assert_untouched()
    assert (done.returncode, done.stdout) == (74, b"")
    assert b"symbolic link" in done.stderr


def test_rewrap_in_place_through_a_planted_symbolic_link_is_refused(tmp_path):
    directory = shared_directory(tmp_path / "shared")
    victim = tmp_path / "victim.enc"
    victim.write_bytes(sealed())
    before = victim.read_bytes()
    path = os.path.join(directory, "b.enc")
    os.symlink(victim, path)
    done = run_process(["rewrap", "--allow-shared-dir", "--in-place", path, "--remove", "ffffffffffffffff"],
                       env=KEY_ENV)
    assert done.returncode == 66, done.stderr
    assert victim.read_bytes() == before and os.path.islink(path)


# --- seal -o EXISTING that fails ------------------------------------------------------------


def _small_file_limit():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))


def test_seal_o_existing_that_fails_to_write_leaves_it_unchanged(tmp_path):
    existing = tmp_path / "b.enc"
    existing.write_bytes(b"the previous backup\n" * 100)
    before = existing.read_bytes()
    done = subprocess.run(command("seal", "-o", str(existing)), input=DATA, capture_output=True,
                          env=clean_env(KEY_ENV), preexec_fn=_small_file_limit, timeout=60)
    assert (done.returncode, done.stdout) == (74, b""), done.stderr
    assert existing.read_bytes() == before
    assert os.listdir(tmp_path) == ["b.enc"]


def test_seal_o_existing_with_a_missing_key_leaves_it_unchanged(tmp_path):
    existing = tmp_path / "b.enc"
    existing.write_bytes(b"the previous backup\n")
    done = run_process(["seal", "-o", str(existing), "--key-file", str(tmp_path / "missing")], DATA)
    assert done.returncode == 66
    assert existing.read_bytes() == b"the previous backup\n"


def test_an_owner_not_given_leaves_the_file_as_it_was(tmp_path, monkeypatch):
    """write_atomically(owner=...) whose fchown is refused (another user, a group the
    caller is not in): before, the refusal was passed over and the new file, the
    caller's, renamed over the original; now IOFailure (74), the original as it was,
    no hidden file left."""
    from encpipe import safefile
    from encpipe.errors import IOFailure

    path = tmp_path / "f"
    path.write_bytes(b"old")
    before = os.stat(path)

    def refused(fd, uid, gid):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "fchown", refused)
    with pytest.raises(IOFailure) as caught:
        safefile.write_atomically(str(path), lambda out: out.write(b"new"), owner=(4242, 4242), replaces=before)
    assert (str(caught.value), caught.value.exit_code) == ("cannot give f its owner and group: Operation not permitted",
                                                          74)
    assert (path.read_bytes(), os.listdir(tmp_path)) == (b"old", ["f"])


def test_an_acl_not_set_leaves_the_file_as_it_was(tmp_path, monkeypatch):
    """write_atomically(acl=...) (encpipe-rotate's: the original's access ACL) whose
    setxattr fails: IOFailure (74), the original as it was, no hidden file left."""
    from encpipe import safefile
    from encpipe.errors import IOFailure

    path = tmp_path / "f"
    path.write_bytes(b"old")

    def refused(fd, name, value):
        raise OSError(95, "Operation not supported")

    monkeypatch.setattr(os, "setxattr", refused)
    with pytest.raises(IOFailure) as caught:
        safefile.write_atomically(str(path), lambda out: out.write(b"new"), acl=b"\x02\0\0\0", replaces=os.stat(path))
    assert str(caught.value) == "cannot set the access ACL of f: Operation not supported"
    assert (path.read_bytes(), os.listdir(tmp_path)) == (b"old", ["f"])


# --- seal -o: the name changed by another while the new file was written ---------------------


@pytest.mark.parametrize("there", [True, False], ids=["replacing", "new"])
@pytest.mark.parametrize("how", ["rewritten", "replaced", "removed"])
def test_seal_o_leaves_a_name_another_changed_meanwhile(tmp_path, there, how):
    """seal -o renames its new file over the name only while the name holds what it
    held when seal began (the same file, same size and time), or nothing if it held
    nothing: else 75, one line, nothing replaced, its hidden file removed. Before,
    another's file put there meanwhile was replaced, exit 0 (README's exit table said
    75, as for rewrap --in-place)."""
    out = tmp_path / "b.enc"
    if there:
        out.write_bytes(b"the previous backup\n")
    change = {"rewritten": f"printf theirs >> {out}", "replaced": f"printf theirs > {out}.new && mv {out}.new {out}",
              "removed": f"rm -f {out}"}[how]
    if not there and how == "rewritten":
        change = f"printf theirs > {out}"  # made where there was none
    done = run_process(["seal", "-o", str(out)], DATA, {**KEY_ENV, "ENCPIPE_TEST_HOOK":
                                                      f'[ "$1" = written ] && {change}; true'})
    if not there and how == "removed":  # nothing there before, nothing there now: no change to leave alone
        assert (done.returncode, done.stderr) == (0, b"")
        assert opens(out)
        return
    assert (done.returncode, done.stdout) == (75, b""), done.stderr
    said = "appeared while it was being written" if not there else "changed while it was being rewritten"
    assert done.stderr.decode() == f"encpipe: error: {out} {said}; left alone\n"
    assert os.listdir(tmp_path) == ([] if how == "removed" else ["b.enc"])
    if how != "removed":
        assert out.read_bytes() == (b"the previous backup\ntheirs" if there and how == "rewritten" else b"theirs")
