"""A SIGINT while an entry point starts, before its handlers: no traceback, across
utf8mode's exec too.

encpipe.launch (encpipe-backup, encpipe-restore) ran utf8mode.ensure() before
earlysig.hold(), `python -m encpipe.backup` held nothing, and the Python scripts
(encpipe-rotate, -migrate, -list...) imported encpipe.cli, holding nothing: a SIGINT
there ended Python with a KeyboardInterrupt traceback. Each entry point now holds
SIGINT first, and ensure(), which executes the command again in UTF-8 mode, carries
a SIGINT held or coming across the exec: blocked, pending, until the new image holds
it in turn (README "Exit status": death by the signal, nothing said).

Each signal comes at an exact point: a finder on sys.meta_path sends it as the entry
point imports a module of encpipe's, in the image it is told (the first one, or the
one executed again in UTF-8 mode: sys.flags.utf8_mode), and writes down each image
that reached that import."""

import os
import signal
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CODE = """
import os, runpy, signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own, whatever this run inherited
for s in (signal.SIGTERM, signal.SIGHUP):
    signal.signal(s, signal.SIG_DFL)

class Finder:  # runs inside importlib, as the import of the entry point's module does
    def find_spec(self, name, path, target=None):
        if name == {at!r}:
            with open({seen!r}, "a") as f:
                f.write(f"{{sys.flags.utf8_mode}}\\n")
            if sys.flags.utf8_mode == {image}:
                os.kill(os.getpid(), signal.SIGINT)
                deadline = time.monotonic() + 0.3
                while time.monotonic() < deadline:  # bytecodes: any could run a handler of Python's
                    pass
        return None

sys.meta_path.insert(0, Finder())
sys.argv = [{name!r}, *{argv!r}]
if {name!r}.startswith("/"):
    runpy.run_path({name!r}, run_name="__main__")
else:
    runpy.run_module({name!r}, run_name="__main__", alter_sys=True)
"""

ENTRY_POINTS = {  # name, its arguments, the module of encpipe's it imports before anything else
    "launch": ("encpipe.launch", ["probe", "probe_main"], "encpipe.utf8mode"),
    "backup": ("encpipe.backup", ["list", "--dir", "{dir}"], "encpipe.utf8mode"),
    "script": (os.path.join(ROOT, "scripts", "encpipe-rotate"), ["--new-key-file", "k", "{dir}"], "encpipe.cli"),
}


def _run(tmp_path, entry, image=0, at=None, *, executed_again=False):
    """The entry point, SIGINT sent in `image` (0: the first one; 1: the one in UTF-8
    mode) as it imports `at`; `executed_again`: under a locale whose charset is not
    UTF-8 (ASCII), so that utf8mode.ensure() executes it again. (its result, the
    images that reached `at`)."""
    name, argv, first = ENTRY_POINTS[entry]
    (tmp_path / "probe_main.py").write_text("def main(argv):\n    print('main ran', flush=True)\n    return 0\n")
    seen = tmp_path / "seen"
    code = CODE.format(at=at or first, seen=str(seen), image=image, name=name,
                       argv=[a.format(dir=tmp_path) for a in argv])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENCPIPE_", "LC_", "PYTHONUTF8"))}
    env.update(PYTHONPATH=os.pathsep.join([ROOT, str(tmp_path)]), LC_ALL="C.UTF-8")
    if executed_again:  # the file system's encoding ASCII: not UTF-8
        env.update(LC_ALL="C", PYTHONUTF8="0", PYTHONCOERCECLOCALE="0")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, stdin=subprocess.DEVNULL,
                          timeout=60)
    return done, seen.read_text() if seen.exists() else ""


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_sigint_before_the_entry_points_handlers_dies_quietly(tmp_path, entry):
    done, seen = _run(tmp_path, entry)
    assert (done.returncode, done.stdout, done.stderr, seen) == (-signal.SIGINT, b"", b"", "0\n")


def test_sigint_while_a_backup_module_command_runs_dies_quietly(tmp_path):
    """`python3 -I -m encpipe.backup verify`, past its start (SIGINT as it opens a backup,
    sent by the test hook that step runs): its SIGINT was a traceback too."""
    from test_backup_dir import KEY, make_valid

    make_valid(tmp_path, "shop_20250101T020000Z.sql.enc")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENCPIPE_", "LC_", "PYTHONUTF8"))}
    env.update(PYTHONPATH=ROOT, LC_ALL="C.UTF-8", ENCPIPE_KEY=KEY.hex(),
               ENCPIPE_TEST_HOOK='[ "$1" = opening ] && kill -INT "$PPID"; exit 0')
    done = subprocess.run([sys.executable, "-c", "import signal, runpy, sys\n"
                           "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
                           f"sys.argv = ['encpipe.backup', 'verify', '--dir', {str(tmp_path)!r}]\n"
                           "runpy.run_module('encpipe.backup', run_name='__main__', alter_sys=True)\n"],
                          env=env, capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (-signal.SIGINT, b"", b"")


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_sigint_held_before_the_exec_into_utf8_mode_goes_with_it(tmp_path, entry):
    """The SIGINT held in the first image, which then executes the command again in
    UTF-8 mode: the new image dies of it once its handlers are set. An exec forgets a
    signal only noted; it was lost (or, before the hold, a traceback)."""
    done, seen = _run(tmp_path, entry, 0, "encpipe.utf8mode", executed_again=True)  # after hold(), before the exec
    assert (done.returncode, done.stdout, done.stderr, seen) == (-signal.SIGINT, b"", b"", "0\n1\n")


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_sigint_in_the_image_executed_again_before_its_hold_dies_quietly(tmp_path, entry):
    """The new image is a new Python: a SIGINT there before its hold() would be its
    KeyboardInterrupt. The first image blocked SIGINT for the exec; the new one takes
    it once it holds it."""
    done, seen = _run(tmp_path, entry, 1, "encpipe.earlysig", executed_again=True)
    assert (done.returncode, done.stdout, done.stderr, seen) == (-signal.SIGINT, b"", b"", "0\n1\n")


def test_without_a_signal_the_command_runs_executed_again(tmp_path):
    """The probe of the tests above: run again in UTF-8 mode, SIGINT unblocked there
    (as in its children), and the mark of the exec not left to them."""
    code = ("import os, signal, sys\n"
            "def main(argv):\n"
            "    print(sys.flags.utf8_mode, signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, []),"
            " 'ENCPIPE_UTF8_AGAIN' in os.environ, flush=True)\n"
            "    return 0\n")
    (tmp_path / "probe_main.py").write_text(code)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENCPIPE_", "LC_", "PYTHONUTF8"))}
    env.update(PYTHONPATH=os.pathsep.join([ROOT, str(tmp_path)]), LC_ALL="C", PYTHONUTF8="0",
               PYTHONCOERCECLOCALE="0")
    done = subprocess.run([sys.executable, "-m", "encpipe.launch", "probe", "probe_main"], env=env,
                          capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, b"1 False False\n", b"")


def _probe(tmp_path, module, env_update, *, block=False):
    """`python -m encpipe.launch probe MODULE` under Python's own SIGINT handler (SIGINT
    blocked by the caller with `block`), the environment given `env_update`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENCPIPE_", "LC_", "PYTHONUTF8"))}
    env.update({"PYTHONPATH": os.pathsep.join([ROOT, str(tmp_path)]), "LC_ALL": "C.UTF-8", **env_update})
    code = ("import runpy, signal, sys\n"
            "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            f"sys.argv = ['encpipe.launch', 'probe', {module!r}]\n"
            "runpy.run_module('encpipe.launch', run_name='__main__', alter_sys=True)\n")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, stdin=subprocess.DEVNULL,
                          timeout=60, preexec_fn=(lambda: signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT}))
                          if block else None)


MASK_PROBE = ("import os, signal, sys\n"
              "def main(argv):\n"
              "    print(sys.flags.utf8_mode, signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, []),"
              " 'ENCPIPE_UTF8_AGAIN' in os.environ, flush=True)\n"
              "    return 0\n")


@pytest.mark.parametrize("mark", ["sigint-blocked", "{caller} sigint-blocked"])  # the caller's pid (not in the
# test's id: each pytest-xdist worker must collect the same ids)
@pytest.mark.parametrize("locale, utf8_mode", [("C.UTF-8", 0), ("C", 1)])
def test_a_mark_from_the_callers_environment_unblocks_nothing(tmp_path, locale, utf8_mode, mark):
    """ENCPIPE_UTF8_AGAIN=sigint-blocked given by the caller, who blocked SIGINT: the
    mark is not this process's own exec's. Before, ensure() unblocked SIGINT (and its
    children, pg_dump, rclone, took Ctrl-C the caller kept from them), and, under a
    charset not UTF-8, did not execute the command again in UTF-8 mode either."""
    (tmp_path / "probe_main.py").write_text(MASK_PROBE)
    done = _probe(tmp_path, "probe_main", {"ENCPIPE_UTF8_AGAIN": mark.format(caller=os.getpid()), "LC_ALL": locale,
                                           "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}, block=True)
    assert (done.returncode, done.stdout, done.stderr) == (0, f"{utf8_mode} True False\n".encode(), b"")


def _said_then_interrupted(done, why):
    """The probe's missing docopt said (`why`: the failure's words), no traceback, then its death by SIGINT."""
    assert (done.returncode, done.stdout, b"Traceback" in done.stderr) == (-signal.SIGINT, b"", False)
    assert done.stderr.startswith(b"probe: error: cannot import the Python module docopt" + why
                                  + b": install the package docopt-ng"), done.stderr


def test_a_sigint_that_waited_for_an_import_that_failed_ends_the_run(tmp_path):
    """A SIGINT while the script's module loads (it waits for the import to end), whose
    import then fails, a dependency missing (69): the SIGINT is taken before the exit,
    as when main returns (sigdefer.drained). Before, the run returned 69, and its retry
    came later, a traceback or at the exit: status 142 (SIGALRM)."""
    (tmp_path / "probe_missing.py").write_text("import os, signal, sys\n"
                                               "sys.modules['docopt'] = None  # docopt-ng not installed\n"
                                               "os.kill(os.getpid(), signal.SIGINT)  # inside this import\n"
                                               "import docopt  # noqa: F401\n")
    _said_then_interrupted(_probe(tmp_path, "probe_missing", {}), b"")


def test_a_script_module_importing_what_is_not_installed_is_one_line(tmp_path):
    """The script's module imports a module that is none of encpipe's dependencies and
    is not there (a broken installation): a bug, one line and 70, as any other.
    Before, report_missing raised it again from run_script's handler: a traceback."""
    (tmp_path / "probe_broken.py").write_text("import encpipe_no_such_module  # noqa: F401\n")
    done = _probe(tmp_path, "probe_broken", {})
    assert (done.returncode, done.stdout, done.stderr.count(b"\n"), b"Traceback" in done.stderr) == \
        (70, b"", 1, False)
    assert done.stderr.startswith(b"probe: error: internal error: ModuleNotFoundError at probe_broken.py:1 ")


def _run_module(tmp_path, code, module, argv, env):
    """`code` (which patches the module), then `module` run as `python -m` with `argv`
    (DIR: tmp_path): it died of SIGINT, nothing on stdout, no traceback."""
    code += (f"DIR = {str(tmp_path)!r}\n"
             f"sys.argv = {argv}\n"
             f"runpy.run_module({module!r}, run_name='__main__', alter_sys=True)\n")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, stdin=subprocess.DEVNULL,
                          timeout=60)
    assert (done.returncode, done.stdout, b"Traceback" in done.stderr) == (-signal.SIGINT, b"", False)
    return done


@pytest.mark.parametrize("module, main, argv", [
    ("encpipe", "encpipe.cli", "['encpipe', 'seal']"),
    ("encpipe.backup", "encpipe.backup.cli", "['encpipe.backup', 'list', '--dir', DIR]"),
], ids=["encpipe", "encpipe.backup"])
def test_a_sigint_that_waited_for_an_import_before_a_bug_ends_it(tmp_path, module, main, argv):
    """`python -m encpipe` and `python3 -I -m encpipe.backup`: a SIGINT while a module
    loads (it waits for the import to end), then a bug (70). The SIGINT is taken before
    the exit, as when main returns. Before, the bug's status was returned and the
    SIGINT's retry came at the exit: status 142 (SIGALRM), or a traceback (encpipe.backup
    did not catch its bug at all)."""
    (tmp_path / "probe_bug.py").write_text("import os, signal\n"
                                           "os.kill(os.getpid(), signal.SIGINT)  # inside this import\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENCPIPE_", "LC_", "PYTHONUTF8"))}
    env.update(PYTHONPATH=os.pathsep.join([ROOT, str(tmp_path)]), LC_ALL="C.UTF-8")
    code = ("import runpy, signal, sys\n"
            "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            f"import {main}\n"
            "def main(*argv):\n"
            "    import probe_bug  # noqa: F401\n"
            "    raise RuntimeError('a bug')\n"
            f"{main}.main = main\n")
    done = _run_module(tmp_path, code, module, argv, env)
    assert done.stderr.startswith(f"{module}: error: internal error: RuntimeError at <string>:6 ".encode()), done.stderr


def test_a_sigint_that_waited_for_an_import_never_cuts_the_line_of_its_failure(tmp_path):
    """The waiting SIGINT's retry (10 ms later) came while the failure was being said
    (here made slow, 0.2 s, as a loaded machine may make it): the run died of SIGINT
    with nothing said (CI met it, test above). The line is said whole first, then the
    SIGINT is taken."""
    (tmp_path / "probe_slow.py").write_text(
        "import os, signal, time\n"
        "class Failing(ImportError):  # found but failing: its words are said\n"
        "    def __str__(self):\n"
        "        time.sleep(0.2)\n"
        "        return 'a library it cannot load'\n"
        "os.kill(os.getpid(), signal.SIGINT)  # inside this import\n"
        "raise Failing(name='docopt')\n")
    _said_then_interrupted(_probe(tmp_path, "probe_slow", {}), b" (a library it cannot load)")


@pytest.mark.parametrize("module, inner, argv", [
    ("encpipe", "encpipe.cli._run", "['encpipe', 'seal']"),
    ("encpipe.backup", "encpipe.backup.cli.run", "['encpipe.backup', 'list', '--dir', DIR]"),
], ids=["encpipe", "encpipe.backup"])
@pytest.mark.parametrize("failure", ["error", "bug"])
def test_a_sigint_that_waited_for_an_import_never_cuts_encpipe_s_own_line(tmp_path, module, inner, argv, failure):
    """As above, for `python -m encpipe` and `python -m encpipe.backup`: an error of
    encpipe's (report_errors) or a bug (70), its words slow to come (0.2 s), after a
    SIGINT that waited for an import. Before, the retry cut the line: died of SIGINT,
    nothing said."""
    (tmp_path / "probe_wait.py").write_text("import os, signal\n"
                                            "os.kill(os.getpid(), signal.SIGINT)  # inside this import\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENCPIPE_", "LC_", "PYTHONUTF8"))}
    env.update(PYTHONPATH=os.pathsep.join([ROOT, str(tmp_path)]), LC_ALL="C.UTF-8")
    base = "encpipe.errors.InputUnavailable" if failure == "error" else "RuntimeError"
    code = ("import runpy, signal, sys, time\n"
            "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            f"import {inner.rpartition('.')[0]}, encpipe.errors\n"
            f"class Slow({base}):\n"
            "    def __str__(self):\n"
            "        time.sleep(0.2)\n"
            "        return 'slow words'\n"
            "def inner(*argv, **kwargs):\n"
            "    import probe_wait  # noqa: F401\n"
            "    raise Slow('x')\n"
            f"{inner} = inner\n")
    done = _run_module(tmp_path, code, module, argv, env)
    said = b"slow words\n" if failure == "error" else b"internal error: Slow at <string>:10 "
    prog = "encpipe-list" if (module, failure) == ("encpipe.backup", "error") else module  # the command's own name
    assert done.stderr.startswith(f"{prog}: error: ".encode() + said), done.stderr
