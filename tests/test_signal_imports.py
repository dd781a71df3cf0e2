"""A handler that raises never raises inside an import.

encpipe-backup, interrupted while its main thread was loading a module, raised
Interrupted inside importlib and left the import lock held: its globals thread,
importing a module of its own, waited for that lock forever, and the backup waited
60 s for that thread (test_backup_signals' first test failed about once in ten runs
on a loaded machine). A handler set by catch_signal, and SIGINT's KeyboardInterrupt
in encpipe and the scripts, now run once the main thread has left the import.

A finder on sys.meta_path runs inside importlib, holding the module's lock, as
the import machinery itself does; it signals the process and runs bytecodes, at
any of which the handler could run."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FINDER = """
import os, signal, sys, threading, time

class Finder:  # runs inside importlib, as its own code does
    def find_spec(self, name, path, target=None):
        if name == "probe_mod":
            os.kill(os.getpid(), SIGNUM)
            deadline = time.monotonic() + 0.3
            while time.monotonic() < deadline:  # bytecodes: any of them could run the handler
                pass
        return None

sys.meta_path.insert(0, Finder())

def other_thread_imports():  # the import lock is free for others once the handler ran
    late = threading.Thread(target=lambda: __import__("probe_other"))
    late.start()
    late.join(10)
    print("other thread imported", not late.is_alive(), flush=True)

def import_probe():  # no thread started meanwhile: threading's own locks are no safer than importlib's
    import probe_mod
    print("imported", probe_mod.x, flush=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        time.sleep(0.001)
    print("never interrupted", flush=True)
"""


def _modules(tmp_path, main=""):
    (tmp_path / "probe_mod.py").write_text("print('probe_mod ran', flush=True)\nx = 1\n")
    (tmp_path / "probe_other.py").write_text("y = 2\n")
    (tmp_path / "probe_main.py").write_text(main)


# each signal handled as by default, whatever this run inherited (nohup ignores SIGHUP: a
# handler is then never set, by design, and the tests would show nothing)
DEFAULTS = "import signal\nfor s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):\n    signal.signal(s, signal.SIG_DFL)\n"


def _run(tmp_path, code):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, str(tmp_path)]))
    return subprocess.run([sys.executable, "-c", DEFAULTS + code], env=env, capture_output=True, timeout=60)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_raising_handler_waits_until_the_import_is_done(tmp_path, signum):
    _modules(tmp_path)
    code = textwrap.dedent(f"""
        SIGNUM = {int(signum)}
        {textwrap.indent(FINDER, '        ').strip()}
        from encpipe.cli import catch_signal

        class Stop(BaseException):
            pass

        def handler(signum, frame):
            raise Stop(signum)

        catch_signal(SIGNUM, handler)
        try:
            import_probe()
        except Stop:
            print("stopped; probe_mod loaded:", "probe_mod" in sys.modules, flush=True)
            other_thread_imports()
        """)
    done = _run(tmp_path, code)
    lines = done.stdout.decode().splitlines()
    assert (done.returncode, done.stderr) == (0, b"")
    assert lines[0] == "probe_mod ran" and lines[-1] == "other thread imported True", lines
    # handled once the import is done: before import_probe's print, after it, or within it (Stop raised
    # between its pieces: the line then begins with what it wrote; a loaded machine's retry came there)
    said, between = "stopped; probe_mod loaded: True", "\n".join(lines[1:-1])
    assert between.endswith(said) and between[:-len(said)] in ("", "imported", "imported ", "imported 1",
                                                                "imported 1\n"), lines


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_script_dies_of_the_signal_after_the_import(tmp_path, signum):
    """run_script: SIGINT (KeyboardInterrupt) and SIGTERM (Terminated) alike."""
    _modules(tmp_path, f"SIGNUM = {int(signum)}\n{FINDER}\ndef main(argv):\n    import_probe()\n    return 0\n")
    done = _run(tmp_path, "import sys\nfrom encpipe.cli import run_script\n"
                          "sys.exit(run_script('probe', 'probe_main', []))")
    assert (done.returncode, done.stderr) == (-signum, b"")
    lines = done.stdout.decode().splitlines()
    assert lines[0] == "probe_mod ran", lines
    assert "never interrupted" not in lines


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_that_waited_for_an_import_just_before_the_end_is_not_lost(tmp_path, signum):
    """main returned as the import the signal waited for was done, before the retry's
    timer (RETRY seconds) ran it: the process exited, its handlers gone, and the
    timer's SIGALRM ended it (status 142 in a shell, "Alarm clock"), neither the
    signal's death nor main's status. The signal now goes to its handler before
    run_script returns."""
    _modules(tmp_path, f"SIGNUM = {int(signum)}\n{FINDER}\ndef main(argv):\n    import probe_mod\n    return 0\n")
    done = _run(tmp_path, "import sys\nfrom encpipe.cli import run_script\n"
                          "sys.exit(run_script('probe', 'probe_main', []))")
    assert (done.returncode, done.stdout, done.stderr) == (-signum, b"probe_mod ran\n", b"")


def test_a_thread_that_starts_a_child_never_unblocks_the_signals(tmp_path):
    """The thread kept SIGINT, SIGTERM and SIGHUP unblocked while it forked; a
    signal it took in that window waited for the main thread's next bytecode,
    which a main thread blocked in a read never reached (the backup above,
    interrupted, then waited for its pg_dump). The child now sets its own mask."""
    code = textwrap.dedent("""
        import signal, subprocess, threading
        from encpipe import sigthreads

        forking = []
        real = subprocess.Popen

        class Spy(real):
            def __init__(self, *args, **options):
                forking.append(signal.pthread_sigmask(signal.SIG_BLOCK, ()))
                super().__init__(*args, **options)

        subprocess.Popen = Spy
        child = []
        work = lambda: child.append(sigthreads.run(["grep", "^SigBlk:", "/proc/self/status"]).stdout)
        sigthreads.start(threading.Thread(target=work)).join()
        handled = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
        print(all(handled <= mask for mask in forking), len(forking))
        print(int(child[0].split()[1], 16) & sum(1 << (s - 1) for s in handled))
        """)
    done = _run(tmp_path, code)
    assert (done.returncode, done.stderr, done.stdout) == (0, b"", b"True 1\n0\n")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_held_over_an_import_goes_to_the_handler_set_meanwhile(tmp_path, signum):
    """The signal waited for the import with the handler of its arrival, and ran
    that one even when the main thread had set another meanwhile: encpipe-backup,
    signalled while loading a module before its own handler was set, died of
    run_script's Terminated in the middle of its dump, its temporary files left
    behind. It now goes to the handler set when it is handled."""
    _modules(tmp_path)
    (tmp_path / "probe_mod.py").write_text(textwrap.dedent("""
        from encpipe.cli import catch_signal
        import __main__
        catch_signal(__main__.SIGNUM, __main__.new)  # still inside the import
        x = 1
        """))
    code = textwrap.dedent(f"""
        SIGNUM = {int(signum)}
        {textwrap.indent(FINDER, '        ').strip()}
        from encpipe.cli import catch_signal

        class Stop(BaseException):
            pass

        def old(signum, frame):
            raise Stop("old")

        def new(signum, frame):
            raise Stop("new")

        catch_signal(SIGNUM, old)
        try:
            import_probe()
        except Stop as e:
            print("stopped by", e.args[0], flush=True)
        """)
    done = _run(tmp_path, code)
    assert (done.returncode, done.stderr) == (0, b""), done.stdout
    assert done.stdout.decode().endswith("stopped by new\n") and "old" not in done.stdout.decode(), done.stdout


LOADING_CLI = """
class Finder:  # SIGINT while an entry point still loads encpipe.cli, before any handler of encpipe's
    def find_spec(self, name, path, target=None):
        if name == "encpipe.usage":  # one that encpipe.cli imports
            os.kill(os.getpid(), signal.SIGINT)
            deadline = time.monotonic() + 0.3
            while time.monotonic() < deadline:
                pass
        return None

sys.meta_path.insert(0, Finder())
"""

EARLY = """
import os, runpy, signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own: DEFAULTS' SIG_DFL would die quietly anyway

""" + LOADING_CLI + """sys.argv = [{module!r}, *{argv!r}]
runpy.run_module({module!r}, run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize("module, argv", [("encpipe.launch", ["probe", "probe_main"]), ("encpipe", ["--version"])])
def test_sigint_while_the_entry_point_loads_dies_quietly(tmp_path, module, argv):
    """Python raises KeyboardInterrupt for SIGINT from its start: one that came while
    encpipe-backup (encpipe.launch) or encpipe was loading encpipe.cli printed a
    traceback. The entry point now holds it until its handlers are set."""
    _modules(tmp_path, "def main(argv):\n    print('main ran', flush=True)\n    return 0\n")
    done = _run(tmp_path, EARLY.format(module=module, argv=argv))
    assert (done.returncode, done.stdout, done.stderr) == (-signal.SIGINT, b"", b"")


CONSOLE = """
import configparser, importlib, os, signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)
config = configparser.ConfigParser()
config.read({setup_cfg!r})
line, = (l for l in config["options.entry_points"]["console_scripts"].splitlines() if l.startswith("encpipe "))
module, function = line.split("=", 1)[1].strip().split(":")

""" + LOADING_CLI + """sys.argv = ["encpipe", "--version"]
sys.exit(getattr(importlib.import_module(module), function)())  # as pip's console script does
"""


def test_sigint_while_the_console_script_loads_dies_quietly(tmp_path):
    """The `encpipe` command pip installs imports setup.cfg's entry point and calls it:
    pointed at encpipe.cli:run, a SIGINT while encpipe.cli loaded was Python's
    KeyboardInterrupt, a traceback. encpipe.entry holds it first, as `python -m encpipe`."""
    done = _run(tmp_path, CONSOLE.format(setup_cfg=os.path.join(ROOT, "setup.cfg")))
    assert (done.returncode, done.stdout, done.stderr) == (-signal.SIGINT, b"", b"")


@pytest.mark.parametrize("handler", ["_raise_terminated", "lambda signum, frame: noted.append(signum)"])
def test_a_child_of_a_thread_signalled_before_its_exec_dies_of_it(tmp_path, handler):
    """A child that a thread starts sets its own mask between fork and exec, in
    Python (preexec_fn): a signal sent to it there (Ctrl-C's SIGINT to the process
    group, systemd's SIGTERM to every process of the unit) ran the parent's
    handler inside the child. A raising one made the start fail ("Exception
    occurred in preexec_fn", a thread's error, the backup's globals failing with
    status 70); one that only notes the signal swallowed it, and the program then
    run (pg_dump, rclone) never saw it. The child now dies of it, as that program
    would have. The signal is sent here just before the child sets its mask."""
    code = textwrap.dedent(f"""
        import os, signal, subprocess, threading
        from encpipe import sigthreads
        from encpipe.cli import _raise_terminated, catch_signal

        noted = []
        catch_signal(signal.SIGTERM, {handler})
        real = sigthreads._initial_mask

        def signalled_first():  # in the child: the thread's mask still blocks SIGTERM
            os.kill(os.getpid(), signal.SIGTERM)
            real()

        sigthreads._initial_mask = signalled_first
        said = []

        def work():
            try:
                said.append(sigthreads.popen(["true"]).wait())
            except BaseException as e:
                said.append(repr(e))

        sigthreads.start(threading.Thread(target=work)).join()
        print(said, noted)
        """)
    done = _run(tmp_path, code)
    assert (done.returncode, done.stderr, done.stdout) == (0, b"", b"[-15] []\n")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_held_over_an_import_is_handled_when_the_caller_blocks_sigalrm(tmp_path, signum):
    """A signal held over an import is handled again on SIGALRM: started with SIGALRM
    blocked (the caller's mask, which exec keeps), the process never took it, and
    the signal was lost (a SIGTERM then never stopped it). SIGALRM stays blocked for
    the process otherwise, as its caller asked."""
    _modules(tmp_path)
    code = textwrap.dedent(f"""
        SIGNUM = {int(signum)}
        signal.pthread_sigmask(signal.SIG_BLOCK, {{signal.SIGALRM}})  # as inherited through exec
        {textwrap.indent(FINDER, '        ').strip()}
        from encpipe.cli import catch_signal

        class Stop(BaseException):
            pass

        def handler(signum, frame):
            raise Stop(signum)

        catch_signal(SIGNUM, handler)
        try:
            import_probe()
        except Stop:
            print("stopped; SIGALRM blocked:", signal.SIGALRM in signal.pthread_sigmask(signal.SIG_BLOCK, ()))
        """)
    done = _run(tmp_path, code)
    lines = done.stdout.decode().splitlines()
    assert (done.returncode, done.stderr) == (0, b""), lines
    # handled once the import is done: before import_probe's print, or within it (Stop raised
    # between its pieces: the line then begins with what it wrote), never lost (`never interrupted`)
    said = "stopped; SIGALRM blocked: True"
    assert lines[-1].endswith(said) and lines[-1][:-len(said)] in ("", "imported", "imported ", "imported 1"), lines


def test_a_sigalrm_that_comes_before_the_retry_leaves_no_timer_behind(tmp_path):
    """A SIGALRM of someone else's (kill -ALRM, a child's) that came before the
    retry's ran it early, and left its timer set: once the handler had run, that
    timer's SIGALRM found the default disposition, and killed the process in the
    middle of its clean-up (temporary files left, status 142)."""
    code = textwrap.dedent("""
        import os, signal
        from encpipe import sigthreads
        from encpipe.cli import catch_signal

        class Stop(BaseException):
            pass

        def handler(signum, frame):
            raise Stop(signum)

        catch_signal(signal.SIGTERM, handler)
        signal.setitimer(signal.ITIMER_REAL, 0)
        try:
            with sigthreads.held():
                os.kill(os.getpid(), signal.SIGTERM)  # held: retried on SIGALRM
            os.kill(os.getpid(), signal.SIGALRM)  # before the retry's own
            print("not stopped")
        except Stop:
            print("stopped; timer left:", signal.getitimer(signal.ITIMER_REAL) != (0.0, 0.0),
                  signal.getsignal(signal.SIGALRM) is signal.SIG_DFL)
        """)
    done = _run(tmp_path, code)
    assert (done.returncode, done.stderr, done.stdout) == (0, b"", b"stopped; timer left: False True\n")


def test_a_signal_held_while_the_main_thread_starts_a_thread_is_handled_when_the_caller_blocks_sigalrm(tmp_path):
    """The handler may run at any bytecode, one inside blocked() too (held() starts a
    child's stderr reader so): blocked() then set the mask of before it back, SIGALRM
    blocked as the caller began, and the retry it had unblocked for never came."""
    code = textwrap.dedent("""
        import signal, sys, threading, time
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})  # as inherited through exec
        from encpipe import sigthreads
        from encpipe.cli import catch_signal

        class Stop(BaseException):
            pass

        def handler(signum, frame):
            raise Stop(signum)

        catch_signal(signal.SIGTERM, handler)
        try:
            with sigthreads.held():
                with sigthreads.blocked():  # the handler, run at one of its bytecodes: held, retried
                    signal.getsignal(signal.SIGTERM)(signal.SIGTERM, sys._getframe())
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                time.sleep(0.001)
            print("never stopped")
        except Stop:
            print("stopped; SIGALRM blocked:", signal.SIGALRM in signal.pthread_sigmask(signal.SIG_BLOCK, ()))
        """)
    done = _run(tmp_path, code)
    assert (done.returncode, done.stderr, done.stdout) == (0, b"", b"stopped; SIGALRM blocked: True\n")
