"""A FILE that is no file: a holder of another slot (the escrow identity) who can
write the backup directory puts a named FIFO under a backup's name (or a link to
one) and feeds it a forgery: the raw key's slot copied, a payload of its own under
that file key, an authenticator it cannot make. From a file, `encpipe open
--key-file K FILE` checks a v2 file whole before it writes anything (README
"Streaming and partial output"); a FILE that turned out to be a pipe was read as
standard input is, once, and the forged chunks (a dump's SQL of the forger's
choosing) went down the pipe before the exit 65. A FILE argument is now checked
whole first whatever it is: one that cannot be read twice is spooled as
ciphertext while it is checked, as with --signer. Standard input is a pipe by the
caller's choice and keeps streaming."""

import os
import subprocess
import sys
import threading

import pytest

from cliutil import run_process
from test_provenance import DATA, World, forge, identity

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return World(tmp_path_factory.mktemp("fifo"))


def sealed_to_k_and_x(world):
    return world.seal(DATA, "--key-file", world.K, "--recipient", world.X_pub)


def refusal(world):
    key_id = run_process(["keyid", "--key-file", world.K]).stdout.decode().strip()
    return (f"encpipe: error: slot authenticator failed: this file was not made by a holder of the raw key {key_id}"
            " that opened it\nencpipe: hint: someone who holds another slot's key (an escrow identity, a passphrase)"
            " may have forged it\n")


def open_fed(argv, fifo, data, tmp_path):
    """`encpipe open ARGV` while a writer feeds `data` into the FIFO at `fifo`:
    (status, stdout, stderr text); TMPDIR is left empty."""
    spool = tmp_path / "spool"
    spool.mkdir(exist_ok=True)

    def feed():
        try:
            fd = os.open(fifo, os.O_WRONLY)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        except OSError:  # BrokenPipeError: the reader went away
            pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCPIPE_")}
    done = subprocess.run([sys.executable, "-m", "encpipe", "open", *argv], capture_output=True, timeout=60,
                          env={**env, "PYTHONPATH": ROOT, "TMPDIR": str(spool)}, stdin=subprocess.DEVNULL)
    if writer.is_alive():  # never opened for reading: let the writer's open return
        os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
    writer.join(10)
    assert os.listdir(spool) == []
    return done.returncode, done.stdout, done.stderr.decode()


def planted(tmp_path, how):
    """A FIFO at a backup's name, or that name a link to a FIFO elsewhere: (name, FIFO)."""
    fifo = tmp_path / ("shop_20250101T000000Z.sql.enc" if how == "a FIFO" else "elsewhere")
    os.mkfifo(fifo)
    if how == "a FIFO":
        return str(fifo), str(fifo)
    name = tmp_path / "shop_20250101T000000Z.sql.enc"
    name.symlink_to(fifo)
    return str(name), str(fifo)


@pytest.mark.parametrize("how", ["a FIFO", "a link to a FIFO"])
def test_a_forgery_fed_through_a_fifo_under_a_backups_name_writes_nothing(world, tmp_path, how):
    forged = forge(sealed_to_k_and_x(world), identity(world.X))
    name, fifo = planted(tmp_path, how)
    assert open_fed(["--key-file", world.K, name], fifo, forged, tmp_path) == (65, b"", refusal(world))


@pytest.mark.parametrize("how", ["a FIFO", "a link to a FIFO"])
def test_a_genuine_file_through_a_fifo_still_opens(world, tmp_path, how):
    name, fifo = planted(tmp_path, how)
    assert open_fed(["--key-file", world.K, name], fifo, sealed_to_k_and_x(world), tmp_path) == (0, DATA, "")


def test_a_pipe_named_as_a_descriptor_is_checked_whole_too(world, tmp_path):
    """/dev/fd/N of a pipe (what a shell's <(...) gives) is a FILE argument too."""
    forged = forge(sealed_to_k_and_x(world), identity(world.X))
    r, w = os.pipe()

    def feed():
        with os.fdopen(w, "wb") as f:
            try:
                f.write(forged)
            except BrokenPipeError:
                pass

    writer = threading.Thread(target=feed)
    writer.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCPIPE_")}
    done = subprocess.run([sys.executable, "-m", "encpipe", "open", "--key-file", world.K, f"/dev/fd/{r}"],
                          capture_output=True, timeout=60, pass_fds=[r], env={**env, "PYTHONPATH": ROOT})
    os.close(r)
    writer.join()
    assert (done.returncode, done.stdout, done.stderr.decode()) == (65, b"", refusal(world))


def test_standard_input_still_streams(world):
    """The caller chose a pipe: each chunk as it authenticates, the trailer at the end
    (README's table; `--verify-first` or `--refuse-unauthenticated` to wait)."""
    forged = forge(sealed_to_k_and_x(world), identity(world.X))
    done = run_process(["open", "--key-file", world.K], stdin=forged)
    assert (done.returncode, done.stderr.decode()) == (65, refusal(world))
    assert done.stdout.startswith(b"\\! touch /tmp/pwned\n")
