"""encpipe/compat.py: what Python 3.9 and 3.10 lack, done by hand there, taken here
on any interpreter (each fallback forced), and agreeing with the standard library's
own where this interpreter has it. Before it, encpipe-backup and encpipe-restore
failed every run on 3.9 and 3.10 with an internal error (Popen(process_group=),
locale.getencoding)."""

import fcntl
import os
import subprocess
import sys
import threading

import pytest

from encpipe import compat, sigthreads, utf8mode
import test_locale_names
from test_locale_names import LATIN1

locales = test_locale_names.locales  # the fixture: an ISO-8859-1 locale of glibc's
F_GETPIPE_SZ = 1032  # Linux's, as compat's F_SETPIPE_SZ (fcntl names neither before 3.10)
GROUP_AND_MASK = 'ps -o pgid= -p $$; exec grep "^SigBlk:" /proc/self/status'  # not sh's: dash waits all blocked


@pytest.fixture(params=["3.9", "this"])
def popen_of(request, monkeypatch):
    """Popen as on Python 3.9 and 3.10 (no process_group: the child sets its group), and
    as this interpreter's."""
    if request.param == "3.9":
        monkeypatch.setattr(compat, "POPEN_PROCESS_GROUP", False)
        init = subprocess.Popen.__init__

        def popen_39(self, *args, **options):
            if "process_group" in options:
                raise TypeError("__init__() got an unexpected keyword argument 'process_group'")
            init(self, *args, **options)

        monkeypatch.setattr(subprocess.Popen, "__init__", popen_39)
    return request.param


def _child_says(in_thread, **options):
    """What a shell started by sigthreads.popen says of its process group and its
    blocked signals: (pid, pgid, SigBlk)."""
    said = {}

    def start():
        with sigthreads.blocked() if in_thread else open(os.devnull):
            proc = sigthreads.popen(["sh", "-c", f"echo $$; {GROUP_AND_MASK}"], stdout=subprocess.PIPE, **options)
        out, _ = proc.communicate(timeout=30)
        said["lines"] = out.decode().split()

    if in_thread:
        thread = threading.Thread(target=start)
        with sigthreads.blocked():  # as sigthreads.start(): the thread blocks the handled signals
            thread.start()
        thread.join(30)
    else:
        start()
    pid, pgid, _, mask = said["lines"]
    return int(pid), int(pgid), mask


@pytest.mark.parametrize("in_thread", [False, True], ids=["main thread", "other thread"])
def test_a_child_asked_for_a_group_of_its_own_leads_one(popen_of, in_thread):
    pid, pgid, mask = _child_says(in_thread, process_group=0)
    assert pgid == pid != os.getpgid(0)
    assert mask == "0000000000000000"  # from another thread too: the mask the process began with


@pytest.mark.parametrize("in_thread", [False, True], ids=["main thread", "other thread"])
def test_a_child_not_asked_stays_in_this_group(popen_of, in_thread):
    for options in ({}, {"process_group": None}):
        pid, pgid, mask = _child_says(in_thread, **options)
        assert (pgid, mask) == (os.getpgid(0), "0000000000000000")


def test_the_options_passed_on_to_popen(monkeypatch):
    monkeypatch.setattr(compat, "POPEN_PROCESS_GROUP", False)
    assert compat.in_own_group({"env": {}, "process_group": 0}) == ({"env": {}}, 0)
    assert compat.in_own_group({"process_group": None}) == ({}, None)
    assert compat.in_own_group({"stdin": 3}) == ({"stdin": 3}, None)
    monkeypatch.setattr(compat, "POPEN_PROCESS_GROUP", True)
    assert compat.in_own_group({"env": {}, "process_group": 0}) == ({"env": {}, "process_group": 0}, None)
    assert compat.in_own_group({"process_group": None}) == ({}, None)


def test_a_pipe_is_widened_without_fcntls_name_for_it(monkeypatch):
    monkeypatch.delattr(fcntl, "F_SETPIPE_SZ", raising=False)
    read_end, write_end = os.pipe()
    try:
        compat.set_pipe_size(write_end, 1 << 20)
        assert fcntl.fcntl(read_end, F_GETPIPE_SZ) == 1 << 20
        with pytest.raises(OSError):
            compat.set_pipe_size(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC), 1 << 20)
    finally:
        os.close(read_end)
        os.close(write_end)


_CHARSET = ("import codecs, sys; sys.path.insert(0, %r); import locale; from encpipe import compat\n"
            "if %r: del locale.getencoding\n"
            "print(sys.flags.utf8_mode, codecs.lookup(compat.locale_encoding()).name)")


@pytest.mark.parametrize("fallback", [True, False], ids=["3.9", "this"])
@pytest.mark.parametrize("utf8_mode", ["1", "0"])
def test_the_locales_charset_whatever_the_utf8_mode(locales, fallback, utf8_mode):
    root = os.path.dirname(os.path.dirname(os.path.abspath(compat.__file__)))
    env = {"PATH": os.environ["PATH"], "LOCPATH": locales, "LC_ALL": LATIN1, "PYTHONUTF8": utf8_mode}
    said = subprocess.run([sys.executable, "-c", _CHARSET % (root, fallback and hasattr(__import__("locale"),
                          "getencoding"))], env=env, capture_output=True, timeout=30)
    assert (said.returncode, said.stdout, said.stderr) == (0, f"{utf8_mode} iso8859-1\n".encode(), b"")


def test_this_processs_command_without_sys_orig_argv(monkeypatch):
    """Python 3.9 has no sys.orig_argv: /proc/self/cmdline's words are the command, and
    without them there is none to execute again (ValueError: utf8mode.ensure goes on as
    it is)."""
    with open("/proc/self/cmdline", "rb") as f:
        expected = f.read().split(b"\0")[:-1]
    monkeypatch.setattr(compat, "orig_argv", lambda: None)
    assert utf8mode._command() == expected

    def no_proc(*args, **kwargs):
        raise FileNotFoundError(2, "No such file or directory")

    monkeypatch.setattr("builtins.open", no_proc)
    with pytest.raises(ValueError):
        utf8mode._command()


_UNRAISABLE = """
import sys
sys.path.insert(0, %r)
from encpipe import cli


class OutOfMemory:
    def __del__(self):
        raise MemoryError


class Bug:
    def __del__(self):
        raise ValueError("said as Python says it")


def main(argv=None):  # each object deleted at once: its exception is unraisable
    OutOfMemory()
    Bug()
    return 0


cli.main = main
%s
"""


@pytest.mark.parametrize("entry", ["cli.run()", "sys.exit(cli.run_script('prog', '__main__', []))",
                                   "cli.set_up('prog'); sys.exit(main())"])
def test_a_memory_error_python_cannot_raise_is_not_printed(entry):
    """Python 3.9 at an address-space limit: after `encpipe: error: out of memory`, its
    threading._shutdown printed `Exception ignored in: <module 'threading'>`, a
    traceback and MemoryError (tests/test_exhaustion.py's seal -o under prlimit). Every
    entry point now leaves such a MemoryError unprinted, and prints any other as before."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(compat.__file__)))
    said = subprocess.run([sys.executable, "-c", _UNRAISABLE % (root, entry)], capture_output=True, timeout=30,
                          env={"PATH": os.environ["PATH"]}, stdin=subprocess.DEVNULL)
    assert (said.returncode, said.stdout) == (0, b""), said.stderr
    assert b"ValueError: said as Python says it" in said.stderr
    assert b"MemoryError" not in said.stderr and b"OutOfMemory" not in said.stderr, said.stderr


def test_encpipe_rotates_help_says_options_on_every_python(monkeypatch, capsys):
    """argparse titled the options "optional arguments" before Python 3.10: the help
    and the man page made from it differed from one Python to another (tests/test_docgen.py
    failed on 3.9)."""
    import argparse

    from encpipe import rotate

    gettext = argparse._
    monkeypatch.setattr(argparse, "_", lambda text: "optional arguments" if text == "options" else gettext(text))
    with pytest.raises(SystemExit) as ended:
        rotate.parse_args(["--help"])
    out = capsys.readouterr().out
    assert ended.value.code in (0, None) and "\noptions:\n" in out and "optional arguments" not in out
