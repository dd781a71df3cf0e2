"""psql's messages in the locale's charset, in encpipe-restore's lines.

encpipe-restore shows the error line of the psql it runs for its own statements
(pgclient: the swap, a DROP DATABASE, the roles) in its one line. It decoded psql's
standard error as UTF-8, a byte that is not UTF-8 a U+FFFD; psql translates its
messages into the locale's charset, so under ISO-8859-1 (here made with localedef,
as in tests/test_locale_names.py) the ü of `für` showed as U+FFFD, lost. Now a line
that is not UTF-8 is read in the locale's charset; a line that is (a server's
message, sent in the database's encoding) is read as UTF-8 as before. The restore
writes its lines in UTF-8 whatever the locale (README, "Names that are not UTF-8 in
JSON"), that text too.
"""

import os
import subprocess

import pytest

from test_backup_restore import RESTORE, encpipe, make_key, python_env

LATIN1 = "de_DE.ISO-8859-1"

REFUSED = ("psql: error: Verbindung zum Server fehlgeschlagen: Passwort-Authentifizierung für Benutzer »pw« "
           "fehlgeschlagen")


@pytest.fixture(scope="module")
def locpath(tmp_path_factory):
    """A LOCPATH holding de_DE.ISO-8859-1 (glibc's localedef, from its sources)."""
    where = tmp_path_factory.mktemp("locales")
    made = subprocess.run(["localedef", "-i", "de_DE", "-f", "ISO-8859-1", str(where / LATIN1)], capture_output=True)
    assert (where / LATIN1).is_dir(), made.stderr
    return str(where)


@pytest.fixture
def sealed(tmp_path):
    key = make_key(tmp_path / "k")
    done = encpipe(["seal", "--key-file", key], input=b"SELECT 1;\n")
    assert done.returncode == 0, done.stderr
    (tmp_path / "shop_20260101T000000Z.sql.enc").write_bytes(done.stdout)
    return key, tmp_path / "shop_20260101T000000Z.sql.enc"


def restore_saying(tmp_path, sealed, message, **env):
    """encpipe-restore whose psql (but for --version) writes `message` (bytes) and exits 2."""
    key, path = sealed
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "said").write_bytes(message)
    (bindir / "psql").write_text('#!/bin/sh\n[ "$1" = --version ] && exec /usr/lib/postgresql/15/bin/psql --version\n'
                                 f'cat "{bindir}/said" >&2\nexit 2\n')
    (bindir / "psql").chmod(0o755)
    env = {**{k: v for k, v in python_env().items() if not k.startswith(("LC_", "LANG", "PYTHONUTF8"))},
           "PATH": f"{bindir}:{os.environ['PATH']}", **env}
    return subprocess.run([RESTORE, "--no-globals", "--key-file", key, path, "shop"], env=env, capture_output=True,
                          stdin=subprocess.DEVNULL, timeout=120)


@pytest.mark.parametrize("written", ["latin-1", "utf-8"])
def test_a_psql_message_is_read_in_the_charset_it_was_written_in(locpath, sealed, tmp_path, written):
    """Under ISO-8859-1: psql's own message in it (before, U+FFFD for ü, » and «), or a line in UTF-8 (as before)."""
    done = restore_saying(tmp_path, sealed, REFUSED.encode(written) + b"\n", LOCPATH=locpath, LC_ALL=LATIN1,
                          LANG=LATIN1)
    assert (done.returncode, done.stdout) == (1, b"")
    # the restore's first psql: nothing was changed (tests/test_client_passwords.py)
    assert done.stderr == f"encpipe-restore: error: {REFUSED}; nothing was changed\n".encode(), done.stderr


def test_under_a_utf_8_locale_a_line_that_is_not_utf_8_is_as_before(sealed, tmp_path):
    done = restore_saying(tmp_path, sealed, REFUSED.encode("latin-1") + b"\n", LC_ALL="C.UTF-8")
    assert (done.returncode, done.stdout) == (1, b"")
    shown = REFUSED.translate({ord(c): "\ufffd" for c in "ü»«"})  # each byte that is not UTF-8
    assert done.stderr == f"encpipe-restore: error: {shown}; nothing was changed\n".encode()
