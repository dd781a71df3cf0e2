"""A script that passes on an encpipe child's error line (encpipe-rotate's key
check, encpipe-restore's and encpipe-migrate's keycheck) shows a name in it as
every message does: its backslash doubled once (shown.printable). The child's
line is already shown so; printed again as it was, a backslash came out four
times, and the name `a\\b` read as the name `a\\\\b` of the script's own lines."""

import itertools
import subprocess
import sys

from encpipe.shown import printable, unprintable

from test_backup_restore import RESTORE, python_env
from test_rotate import SCRIPT as ROTATE, rotate_env

JUNK_KEY = "a\\nb"  # a backslash and an n: shown `a\\nb`


def _junk_key(tmp_path):
    (tmp_path / JUNK_KEY).write_text("junk\n")
    (tmp_path / JUNK_KEY).chmod(0o600)


def test_rotate_shows_a_key_file_s_name_from_its_key_check_escaped_once(tmp_path):
    _junk_key(tmp_path)
    (tmp_path / "new").write_text("ab" * 32 + "\n")
    (tmp_path / "new").chmod(0o600)
    (tmp_path / "d").mkdir(mode=0o700)
    done = subprocess.run([sys.executable, ROTATE, "--old-key-file", JUNK_KEY, "--new-key-file", "new", "d"],
                          cwd=tmp_path, env=rotate_env(), stdin=subprocess.DEVNULL, capture_output=True)
    assert (done.returncode, done.stdout) == (64, b""), done.stderr
    assert done.stderr.decode() == "encpipe-rotate: error: a\\\\nb, line 1: a key must be 64 hex characters, not 4\n"


def test_restore_shows_a_key_file_s_name_from_its_key_check_escaped_once(tmp_path):
    _junk_key(tmp_path)
    done = subprocess.run([RESTORE, "--key-file", JUNK_KEY, "db_20250101T000000Z.sql.enc", "db"], cwd=tmp_path,
                          env=python_env(), stdin=subprocess.DEVNULL, capture_output=True)
    assert (done.returncode, done.stdout) == (64, b""), done.stderr
    assert done.stderr.decode().splitlines()[0] == (
        "encpipe-restore: error: --key-file: a\\\\nb, line 1: a key must be 64 hex characters, not 4")



def test_unprintable_undoes_printable():
    alphabet = ["a", "n", "x", "u", "7", "f", "0", "\\", "\n", "\t", "\x1b", "\x7f", "\x80", "\udc80", "\xff",
                "\udcff", "\u2028", "\U000e0001", "é"]
    for length in range(1, 4):
        for text in map("".join, itertools.product(alphabet, repeat=length)):
            assert unprintable(printable(text)) == text, text


def test_restore_s_refused_restrict_key_message_has_no_backslash(tmp_path):
    done = subprocess.run([RESTORE, "db_20250101T000000Z.dump.enc", "db", "--", "--restrict-key=k"], cwd=tmp_path,
                          env=python_env(), stdin=subprocess.DEVNULL, capture_output=True)
    assert (done.returncode, done.stdout) == (64, b""), done.stderr
    assert done.stderr.decode().splitlines()[0].endswith(
        "is not allowed: the restore gives psql a restrict key of its own"), done.stderr
