"""The backup tools read a name's bytes as UTF-8 whatever the locale (README, "Names
that are not UTF-8 in JSON"): under a locale whose charset is not UTF-8 (here
ISO-8859-1, made with localedef), Python reads file names, arguments and the
environment in that charset. Before, encpipe-list there gave the UTF-8 name
`café_...` as "cafÃ©_..." and the name whose byte E9 is not UTF-8 as "café_..."
with no `filename_base64`: a script taking the string's UTF-8 bytes, as README
says, acted on another file, or on none. And encpipe-check, run so by a monitor,
took the database `café` of a metrics file written under a UTF-8 locale for
another database than that of its files: CRITICAL, "no backup", after a backup.
"""

import base64
import json
import os
import site
import shlex
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from encpipe.backup import metrics
from test_backup_dir import KEY, ROOT, make_valid, stamp
from test_prompt import run_on_terminal

LATIN1 = "en_US.ISO-8859-1"
UTF8 = b"caf\xc3\xa9"  # café in UTF-8
NOT_UTF8 = b"caf\xe9"  # café in ISO-8859-1: not UTF-8


@pytest.fixture(scope="module")
def locales(tmp_path_factory):
    """A LOCPATH holding en_US.ISO-8859-1 (glibc's localedef, from its sources)."""
    where = tmp_path_factory.mktemp("locales")
    made = subprocess.run(["localedef", "-i", "en_US", "-f", "ISO-8859-1", str(where / LATIN1)],
                          capture_output=True)
    assert (where / LATIN1).is_dir(), made.stderr
    probe = subprocess.run([sys.executable, "-c", "import sys; print(sys.getfilesystemencoding())"],
                           env=_env(str(where), LATIN1), capture_output=True)
    assert probe.stdout == b"iso8859-1\n", probe  # else this test shows nothing
    return str(where)


def _env(locpath, locale, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENCPIPE_", "LC_", "PYTHONUTF8"))}
    env.update(LOCPATH=locpath, LC_ALL=locale, LANG=locale, ENCPIPE_KEY=KEY.hex(), PYTHONPATH=ROOT, **extra)
    return env


def _run(argv, env):
    return subprocess.run(argv, env=env, capture_output=True, stdin=subprocess.DEVNULL, timeout=60)


def _backups(directory):
    directory.mkdir()
    now = datetime.now(timezone.utc)
    for n, db in enumerate((UTF8, NOT_UTF8)):
        name = db + f"_{stamp(now - timedelta(hours=2, seconds=n))}.sql.enc".encode()
        make_valid(directory, os.fsdecode(name))
    return directory


@pytest.mark.parametrize("how", ["script", "module"])
def test_a_listing_is_the_same_bytes_under_a_latin1_locale_as_under_utf8(tmp_path, locales, how):
    directory = _backups(tmp_path / "b")
    argv = ([os.path.join(ROOT, "scripts", "encpipe-list")] if how == "script"
            else [sys.executable, "-m", "encpipe.backup", "list"]) + [str(directory)]
    latin1 = _run(argv, _env(locales, LATIN1))
    utf8 = _run(argv, _env(locales, "C.UTF-8"))
    assert (latin1.returncode, latin1.stderr) == (0, b"")
    assert latin1.stdout == utf8.stdout
    shown = {base64.b64decode(e["filename_base64"]) if "filename_base64" in e else e["filename"].encode()
             for e in json.loads(latin1.stdout)}
    assert shown == {os.fsencode(n) for n in os.listdir(directory)}  # each name's exact bytes


def test_check_under_a_latin1_locale_matches_a_metrics_file_written_under_utf8(tmp_path, locales):
    directory = _backups(tmp_path / "b")
    (tmp_path / "m").mkdir()
    prom = tmp_path / "m" / "encpipe.prom"
    for db in (UTF8, NOT_UTF8):  # as encpipe-backup records them under a UTF-8 locale
        metrics.record(str(prom), os.fsdecode(db), ok=True, finished=2.0, duration=1.0)
    argv = [os.path.join(ROOT, "scripts", "encpipe-check"), "--max-age", "24", "--metrics-file", str(prom),
            str(directory)]
    done = _run(argv, _env(locales, LATIN1))
    assert (done.returncode, done.stderr) == (0, b"")
    texts = [line.split(" | ")[0].rsplit(" is ", 1)[0] for line in done.stdout.decode().splitlines()]
    assert texts == ["OK: café: newest backup café_" + _stamp_of(directory, UTF8),
                     "OK: caf\\xe9: newest backup caf\\xe9_" + _stamp_of(directory, NOT_UTF8)]


def _stamp_of(directory, db):
    name, = [n for n in os.listdir(os.fsencode(directory)) if n.startswith(db + b"_")]
    return name[len(db) + 1:].decode()


def test_encpipe_backup_of_a_non_ascii_database_under_a_latin1_locale(pg, tools, key_file, tmp_path, locales):
    """encpipe-backup (a shell script, then encpipe.launch), executed again in UTF-8 mode,
    still dumps the database its argument's bytes name, and names its files so."""
    from test_backup_restore import BACKUP, script_env

    name = "caf\u00e9"  # its bytes under a UTF-8 locale: UTF8
    pg.dropdb(name)
    pg.createdb(name)
    try:
        env = script_env(pg, tools, LOCPATH=locales, LC_ALL=LATIN1, LANG=LATIN1)
        env = {k: v for k, v in env.items() if k != "PYTHONUTF8"}
        done = subprocess.run([BACKUP, "--dir", str(tmp_path / "b"), "--key-file", str(key_file),
                               "--compress", "none", UTF8], env=env, capture_output=True, timeout=300)
        assert (done.returncode, done.stderr) == (0, b""), done.stderr
        made = sorted(os.listdir(os.fsencode(tmp_path / "b")))
        assert [n.split(b"_")[0] for n in made if not n.startswith(b".")] == [UTF8, UTF8]
    finally:
        pg.dropdb(name)


def test_a_passphrase_typed_under_a_latin1_locale_opens_what_it_sealed_before(tmp_path, locales):
    """The prompt reads the terminal in its locale's charset, as before UTF-8 mode: a
    passphrase typed as ISO-8859-1 `päss` is the UTF-8 text `päss` (what sealed it)."""
    directory = tmp_path / "b"
    directory.mkdir()
    name = f"shop_{stamp(datetime.now(timezone.utc) - timedelta(hours=1))}.sql.enc"
    sealed = subprocess.run([sys.executable, "-m", "encpipe", "seal", "--work-factor", "10", "-o",
                             str(directory / name)], input=b"-- x\n",
                            env=dict(_env(locales, "C.UTF-8"), ENCPIPE_PASSPHRASE="p\u00e4ss"), capture_output=True)
    assert sealed.returncode == 0, sealed.stderr
    env = {k: v for k, v in _env(locales, LATIN1).items() if k != "ENCPIPE_KEY"}
    status, screen = run_on_terminal(shlex.join([os.path.join(ROOT, "scripts", "encpipe-verify"), "-p",
                                                 str(directory)]), [b"p\xe4ss"], timeout=60, env=env)
    assert status == 0, screen


# A key command that is a Python program (a secret store's client), printing its passphrase
# as Python does: in the locale's charset, unless in UTF-8 mode
_PRINTS_PASS = f"{shlex.quote(sys.executable)} -c 'print(\"p\" + chr(228) + \"ss\")'"


def test_a_python_passphrase_command_prints_under_encpipe_verify_what_it_printed_to_seal(tmp_path, locales):
    """The scripts' children get the environment they were given: under ISO-8859-1, a
    key command written in Python printed `päss` as the byte E4 to `encpipe seal`, and,
    given PYTHONUTF8=1 by encpipe-verify (executed again in UTF-8 mode), as C3 A4: another
    passphrase, and every backup it had sealed failed to open."""
    directory = tmp_path / "b"
    directory.mkdir()
    name = f"shop_{stamp(datetime.now(timezone.utc) - timedelta(hours=1))}.sql.enc"
    env = {k: v for k, v in _env(locales, LATIN1).items() if k != "ENCPIPE_KEY"}
    sealed = _run([sys.executable, "-m", "encpipe", "seal", "--work-factor", "10", "--passphrase-command",
                   _PRINTS_PASS, "-o", str(directory / name)], env)
    assert sealed.returncode == 0, sealed.stderr
    done = _run([os.path.join(ROOT, "scripts", "encpipe-verify"), "--passphrase-command", _PRINTS_PASS,
                 str(directory)], env)
    assert (done.returncode, done.stderr) == (0, b""), done.stderr
    assert [r["ok"] for r in json.loads(done.stdout)["results"]] == [True]


def test_an_interpreter_that_cannot_be_executed_again_runs_as_it_is(tmp_path, locales):
    """Started with an argv[0] that names no interpreter (exec -a), sys.executable is no file:
    the execution again in UTF-8 mode failed, a traceback and 1; now it runs as it is."""
    directory = _backups(tmp_path / "b")
    # Without a path to its python, the interpreter does not find a virtual environment's
    # pyvenv.cfg either: it gets the environment's packages on PYTHONPATH, as a fresh machine's
    # interpreter has none of them.
    env = _env(locales, LATIN1)
    if sys.prefix != sys.base_prefix:
        env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], *site.getsitepackages()])
    done = subprocess.run(["./nowhere", "-m", "encpipe.backup", "list", str(directory)], executable=sys.executable,
                          cwd=tmp_path, env=env, capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
    assert (done.returncode, done.stderr) == (0, b"")
    assert len(json.loads(done.stdout)) == 2


@pytest.fixture(scope="module")
def big5(locales):
    """zh_TW.BIG5 beside en_US.ISO-8859-1: a charset whose bytes glibc reads as text that
    Python's big5 codec writes back as other bytes (A1 FE as A2 41), or not at all (A1 45)."""
    made = subprocess.run(["localedef", "-i", "zh_TW", "-f", "BIG5", os.path.join(locales, "zh_TW.BIG5")],
                          capture_output=True)
    probe = subprocess.run([sys.executable, "-c", "import os, sys; print(os.fsencode(sys.argv[1]).hex())", b"\xa1\xfe"],
                           env=_env(locales, "zh_TW.BIG5"), capture_output=True)
    assert probe.stdout == b"a241\n", (made.stderr, probe)  # else this test shows nothing
    return "zh_TW.BIG5"


@pytest.mark.parametrize("part", [b"\xa1\xfe", b"\xa1\x45"], ids=["read-as-other-bytes", "not-written-back"])
def test_a_name_under_a_big5_locale_is_its_bytes_once_executed_again(tmp_path, locales, big5, part):
    """The command executed again in UTF-8 mode is the one given, byte for byte: before, it
    was sys.orig_argv, text read by glibc's BIG5 that Python's codec wrote back as other
    bytes (the directory A1 FE named A2 41: a listing of another directory, or of none),
    or could not (A1 45: a traceback)."""
    directory = os.fsencode(tmp_path) + b"/" + part
    os.mkdir(directory)
    make_valid(Path(os.fsdecode(directory)), f"shop_{stamp(datetime.now(timezone.utc) - timedelta(hours=1))}.sql.enc")
    done = _run([sys.executable, "-m", "encpipe.backup", "list", directory], _env(locales, big5))
    assert (done.returncode, done.stderr) == (0, b"")
    assert [(e["filename"], e["status"]) for e in json.loads(done.stdout)] == [(os.listdir(directory)[0].decode(), "sealed")]
