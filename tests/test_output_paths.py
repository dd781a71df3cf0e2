"""An output path means what the kernel (and the shell's `>`) makes of it. `..` after
a symbolic link is the parent of the link's target, not of the link: os.path.abspath's
lexical reading made `seal -o L/../y` replace the y beside L (exit 0, nothing said),
`rewrap --in-place L/../f` fail 75 (`changed while it was being rewritten`), and
`keygen -o L/../k` check the wrong directory for other writers before writing a
secret key in the right one. A trailing `/` names a directory: `seal -o nodir/` made
a file `nodir`, exit 0."""

import os
import stat

import pytest

from cliutil import KEY_B, key_env, ok, run, seal, secret_file
from encpipe import dirlock

DATA = b"output path\n" * 100


@pytest.fixture
def linked(tmp_path, monkeypatch):
    """tmp_path as the current directory, holding sub/inner, a link L to it, and a file
    y.txt here and in sub: L/../y.txt is sub/y.txt."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub" / "inner").mkdir(parents=True)
    os.symlink("sub/inner", "L")
    (tmp_path / "y.txt").write_bytes(b"top\n")
    (tmp_path / "sub" / "y.txt").write_bytes(b"sub\n")
    return tmp_path


def test_seal_o_through_a_link_and_dot_dot_writes_the_file_the_kernel_names(linked):
    assert ok(run(["seal", "-o", "L/../y.txt"], stdin=DATA, env=key_env())) == b""
    assert (linked / "y.txt").read_bytes() == b"top\n"
    assert ok(run(["open"], stdin=(linked / "sub" / "y.txt").read_bytes(), env=key_env())) == DATA


def test_seal_o_checks_the_directory_it_writes_in_not_the_one_the_name_reads_as(linked):
    os.chmod(linked / "sub", 0o777)  # another user could swap the file: 73, as for any such directory
    done = run(["seal", "-o", "L/../y.txt"], stdin=DATA, env=key_env())
    assert (done.code, done.stdout) == (73, b""), done.stderr
    assert ((linked / "y.txt").read_bytes(), (linked / "sub" / "y.txt").read_bytes()) == (b"top\n", b"sub\n")


@pytest.mark.parametrize("output", ["nodir/", "nodir/.", "nodir/..", "sub/", "sub/."])
def test_seal_o_of_a_directorys_name_is_refused_and_makes_nothing(linked, output):
    done = run(["seal", "-o", output], stdin=DATA, env=key_env())
    assert (done.code, done.stdout) == (74, b"")
    assert done.stderr == f"encpipe: error: cannot create {output}: Is a directory\n"
    assert sorted(os.listdir(linked)) == ["L", "sub", "y.txt"] and sorted(os.listdir(linked / "sub")) == [
        "inner", "y.txt"]


def test_seal_o_under_a_missing_directory_and_dot_dot_is_refused(linked):
    done = run(["seal", "-o", "nodir/../x.enc"], stdin=DATA, env=key_env())
    assert (done.code, done.stdout) == (74, b"")
    assert done.stderr == "encpipe: error: cannot create nodir/../x.enc: No such file or directory\n"
    assert sorted(os.listdir(linked)) == ["L", "sub", "y.txt"]


def test_rewrap_in_place_through_a_link_and_dot_dot_rewraps_that_file(linked):
    sealed = seal(DATA)
    (linked / "sub" / "r.enc").write_bytes(sealed)
    (linked / "r.enc").write_bytes(sealed)
    new_key = secret_file(linked, "b.key", KEY_B + "\n")
    done = run(["rewrap", "--in-place", "L/../r.enc", "--add-key-file", str(new_key)], env=key_env())
    assert (done.code, done.stdout) == (0, b""), done.stderr
    assert (linked / "r.enc").read_bytes() == sealed
    assert ok(run(["open"], stdin=(linked / "sub" / "r.enc").read_bytes(), env=key_env(KEY_B))) == DATA


def test_keygen_o_through_a_link_and_dot_dot_checks_the_directory_it_writes_in(linked):
    os.chmod(linked / "sub", 0o777)
    done = run(["keygen", "-o", "L/../k.key"])
    assert (done.code, done.stdout) == (73, b""), done.stderr
    assert not (linked / "sub" / "k.key").exists() and not (linked / "k.key").exists()
    os.chmod(linked / "sub", 0o755)
    assert ok(run(["keygen", "-o", "L/../k.key"])) == b""
    assert stat.S_IMODE(os.stat(linked / "sub" / "k.key").st_mode) == 0o600 and not (linked / "k.key").exists()


def test_directories_made_through_dot_dot_are_recorded_by_the_kernels_names(linked):
    """make_directories (a backup's --dir) records what it made for removal on failure:
    never a `..` (the directory above, which it did not make)."""
    made = dirlock.make_directories("nodir/../new/deeper")
    assert [os.path.basename(path) for path, _ in made] == ["new", "deeper"]
    assert (linked / "nodir").is_dir() and (linked / "new" / "deeper").is_dir()
    dirlock.remove_made(made)
    assert sorted(os.listdir(linked)) == ["L", "nodir", "sub", "y.txt"]
    made = dirlock.make_directories("L/../made")
    assert [path for path, _ in made] == [os.path.join(str(linked), "L/../made")]
    assert (linked / "sub" / "made").is_dir()
    dirlock.remove_made(made)
    assert not (linked / "sub" / "made").exists()
