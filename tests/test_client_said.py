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


def test_a_restore_stopped_passes_on_all_its_client_said_before_its_own_line(tmp_path):
    """Restore.kill() (a signal, a failure mid-feed) waits for the relay: before, it
    returned with the client's lines still in the pipe, which then came after the
    restore's own line, or never (the process exited, the relay a daemon thread)."""
    import fcntl
    import subprocess

    from encpipe.pgstream import Restore

    out_read, out_write = os.pipe()
    restore = Restore(None, None, (), (), None, False, None)
    restore.client_said = said = ClientSaid(out_write)
    fcntl.fcntl(said.fd, 1031, 1 << 20)  # F_SETPIPE_SZ: the client writes all of it at once
    marker = tmp_path / "written"
    client = subprocess.Popen(["sh", "-c", f'head -c 800000 /dev/zero >&2 && : > "{marker}" && exec sleep 60'],
                              stderr=said.fd)
    said.started()
    restore.procs.append(client)
    while not marker.exists():  # all of it in the pipe, the relay blocked on a reader not reading yet
        assert client.poll() is None
        threading.Event().wait(0.01)
    got = []

    def reader():  # reads once the client was stopped, as the restore's standard error's reader would
        while client.returncode is None:
            threading.Event().wait(0.001)
        got.append(os.fdopen(out_read, "rb").read())

    thread = threading.Thread(target=reader)
    thread.start()
    restore.kill()
    os.write(out_write, b"encpipe-restore: error: the restore's own line\n")
    os.close(out_write)
    thread.join()
    assert got[0] == bytes(800000) + b"encpipe-restore: error: the restore's own line\n"


def test_a_process_the_client_left_holding_the_pipe_is_not_waited_for(tmp_path):
    """Once the client ended, what is in the pipe is all it wrote: the relay ends
    with it (as childerr's do), whatever it left behind that holds the pipe.
    Before, wait() waited 10 s for that process, and returned with the relay still
    running: what that process wrote came after the restore's own line."""
    import signal
    import subprocess

    out_read, out_write = os.pipe()
    said = ClientSaid(out_write)
    left = tmp_path / "left"
    client = subprocess.Popen(["sh", "-c", f'echo "psql: said" >&2; sleep 600 & echo $! > "{left}"; exit 3'],
                              stderr=said.fd)
    said.started()
    try:
        assert client.wait() == 3
        said.wait()
        assert not said._thread.is_alive()
    finally:
        os.kill(int(left.read_text()), signal.SIGKILL)
    os.close(out_write)
    assert os.fdopen(out_read, "rb").read() == b"psql: said\n"


def _over_1023(relay):
    """relay() with every new descriptor numbered over 1023."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert hard >= 1100, "the test needs 1100 descriptors"
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1100), hard))
    held = []
    try:
        while not held or held[-1] < 1030:
            held.append(os.open(os.devnull, os.O_RDONLY))
        return relay()
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_descriptor_over_1023_is_read_as_any_other():
    """The relay waits on its pipe with poll(), which select() could not for a
    descriptor over 1023 (a restore with many open): the relay thread's traceback."""
    passed, said = _over_1023(lambda: _said(b"psql:<stdin>:3: ERROR:  42704\n"))
    assert (passed, said.codes) == (b"psql:<stdin>:3: ERROR:  42704\n", {"42704"})


def test_a_child_encpipes_relay_reads_a_descriptor_over_1023_too():
    """childerr's relay (encpipe children's stderr), which pgsaid's reads with: on
    select(), a descriptor over 1023 ended it at once, the child's error line lost."""
    import subprocess
    import sys

    from encpipe import childerr

    def relay():
        proc, said = childerr.started(subprocess.Popen, [sys.executable, "-c",
                                                         "import sys; sys.stderr.write('encpipe: error: no\\n')"],
                                      stderr_of=childerr.ChildStderr(out=open(os.devnull, "w")))
        proc.wait()
        return said.wait()

    assert _over_1023(relay) == ("no", None)
