"""A bad value of a number or a choice (`--threads`, `--work-factor`, `--chunk-size`,
`--size`, `--keep-*`, `--max-age`, `--warn-age`, `--timeout`, `--format`,
`--compress`, `--drop-pre-restore-older-than`, `--kind`, `--started`, and the
settings ENCPIPE_LOCK_WAIT, ENCPIPE_CIPHER, ENCPIPE_SCRYPT_BUDGET) was echoed
in its usage error: a key or passphrase typed there by mistake (`--work-factor
"$KEY"`, options shifted by one) was printed to the terminal and the logs. It
is now shown as textform.shown_value shows it: a key said for what it is
(`a raw key (a secret, not shown)`), a value that may be a passphrase (longer
than 20 characters, or words with white space between them) not shown; any
other bad value as before (`--threads must be a whole number, not 'x'`).
The status and the one line are as before. README, "Where keys come from"."""

import io
import os
import subprocess
import sys

import pytest

from encpipe.backup.cli import main as backup_main
from encpipe.backup.job import main as job_main
from encpipe.textform import VALUE_NOT_SHOWN
from fuzz.craft import clean_env, command, run_in_process
from test_backup_dir import ENV
from test_backup_restore import SCRIPTS

KEY = "c0ffee15" * 8
SECRETS = {  # what each is said to be
    "raw key": (KEY, "a raw key (a secret, not shown)"),
    "raw key upper case": (KEY.upper(), "a raw key (a secret, not shown)"),
    "identity": ("ENCPIPE-SECRET-KEY-1" + "Q" * 58, "an X25519 identity (a secret, not shown)"),
    "signing key": ("ENCPIPE-SIGNING-KEY-1" + "Q" * 58, "a signing key (a secret, not shown)"),
    "passphrase": ("correct horse battery staple", VALUE_NOT_SHOWN),
    "short passphrase in words": ("my pass", VALUE_NOT_SHOWN),
    "long passphrase": ("Tr0ub4dor&3-Tr0ub4dor&3", VALUE_NOT_SHOWN),
}

# (how it is run, argv with V for the value, the ordinary bad value, its error line as before, less the prefix)
CASES = [
    ("encpipe", ["seal", "--threads", "V"], "x", "--threads must be a whole number, not 'x'"),
    ("encpipe", ["open", "--threads", "V"], "x", "--threads must be a whole number, not 'x'"),
    ("encpipe", ["seal", "--threads", "V"], "99", "--threads must be from 1 to 64, not 99"),
    ("encpipe", ["seal", "--work-factor", "V"], "x", "--work-factor must be a whole number, not 'x'"),
    ("encpipe", ["seal", "--chunk-size", "V"], "x", "--chunk-size: cannot read 'x'; use e.g. 64K or 1M"),
    ("encpipe", ["seal", "--progress", "--size", "V"], "x", "--size must be a whole number, not 'x'"),
    *[("prune", ["prune", option, "V", "DIR"], "x", f"{option} must be a whole number from 0, not 'x'")
      for option in ("--keep-last", "--keep", "--keep-daily", "--keep-weekly", "--keep-monthly")],
    ("prune", ["prune", "--max-age", "V", "DIR"], "x", "--max-age must be a number from 0 to 1000000, not 'x'"),
    ("check", ["check", "--max-age", "V", "DIR"], "x", "--max-age must be a number from 0 to 1000000, not 'x'"),
    ("check", ["check", "--max-age", "24", "--warn-age", "V", "DIR"], "x",
     "--warn-age must be a number from 0 to 1000000, not 'x'"),
    ("check", ["check", "--max-age", "24", "--timeout", "V", "DIR"], "x",
     "--timeout must be a number of seconds above 0, at most 1000000, not 'x'"),
    ("job", ["commit", "--dir", "DIR", "--database", "shop", "--kind", "V", "--started", "1", "t", "n"], "x",
     "--kind must be sql, sql.zst, sql.gz, dump or globals.sql, not 'x'"),
    ("job", ["commit", "--dir", "DIR", "--database", "shop", "--kind", "sql", "--started", "V", "t", "n"], "x",
     "--started must be Unix time in seconds, not 'x'"),
    ("encpipe-backup", ["--dir", "DIR", "--format", "V", "shop"], "x", "--format must be plain or custom, not 'x'"),
    ("encpipe-backup", ["--dir", "DIR", "--compress", "V", "shop"], "x",
     "--compress must be zstd, gzip or none, not 'x'"),
    ("encpipe-backup", ["--dir", "DIR", "--threads", "V", "shop"], "x", "--threads must be a whole number, not 'x'"),
    ("encpipe-backup", ["--dir", "DIR", "--work-factor", "V", "shop"], "x",
     "--work-factor must be a whole number, not 'x'"),
    ("encpipe-backup", ["--dir", "DIR", "--chunk-size", "V", "shop"], "x",
     "--chunk-size: cannot read 'x'; use e.g. 64K or 1M"),
    ("encpipe-restore", ["--drop-pre-restore-older-than", "V", "FILE", "shop_copy"], "x",
     "--drop-pre-restore-older-than must be a number of days, not 'x'"),
    ("encpipe-restore", ["--threads", "V", "FILE", "shop_copy"], "x", "--threads must be a whole number, not 'x'"),
    ("encpipe-migrate", ["--work-factor", "V", "DIR"], "x", "--work-factor must be a whole number, not 'x'"),
    ("encpipe-migrate", ["--chunk-size", "V", "DIR"], "x", "--chunk-size: cannot read 'x'; use e.g. 64K or 1M"),
    # settings, in the environment: a key pasted into the wrong variable
    ("prune ENCPIPE_LOCK_WAIT", ["prune", "--keep-last", "1", "DIR"], "soon",
     "ENCPIPE_LOCK_WAIT must be a number of seconds from 0 to 1000000, not 'soon'"),
    ("encpipe ENCPIPE_CIPHER", ["seal"], "openssl",
     "ENCPIPE_CIPHER must be cryptography or pycryptodome, not 'openssl'"),
    ("encpipe ENCPIPE_SCRYPT_BUDGET", ["open", "--passphrase-file", "PASS"], "x",
     "ENCPIPE_SCRYPT_BUDGET must be a whole number of at least 2097152 (N*r*p of one attempt at the default cost), "
     "not 'x'"),
]


def run(tmp_path, how, argv, value):
    """(status, standard output, standard error) of `argv` with V as `value`."""
    (tmp_path / "d").mkdir(exist_ok=True)
    (tmp_path / "pass").write_text("pw\n")
    (tmp_path / "pass").chmod(0o600)
    sealed = tmp_path / "shop_20250101T000000Z.sql.enc"
    if not sealed.exists():
        sealed.write_bytes(run_in_process(["seal"], b"data", {"ENCPIPE_KEY": KEY})[1])
    given = {"V": value, "DIR": str(tmp_path / "d"), "FILE": str(sealed), "PASS": str(tmp_path / "pass")}
    argv = [given.get(word, word) for word in argv]
    tool, _, setting = how.partition(" ")
    if setting:
        argv = [value if word == "V" else word for word in argv]
    settings = {setting: value} if setting else {}
    if tool in ("prune", "check"):
        out, err = io.BytesIO(), io.StringIO()
        code = backup_main(argv, stdout=out, stderr=err, env={**ENV, **settings})
        return code, out.getvalue().decode(), err.getvalue()
    if tool == "job":
        out, err = io.BytesIO(), io.StringIO()
        code = job_main(argv, stdin=io.BytesIO(), stdout=out, stderr=err, env={})
        return code, out.getvalue().decode(), err.getvalue()
    words = command(*argv) if tool == "encpipe" else [str(SCRIPTS / tool), *argv]
    env = clean_env({"ENCPIPE_KEY": KEY, "PYTHONPATH": str(SCRIPTS.parent), "PGHOST": str(tmp_path / "no-server"),
                     "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"], **settings})
    done = subprocess.run(words, stdin=sealed.open("rb"), capture_output=True, env=env, timeout=60)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def assert_refused(how, code, out, err, line):
    """64 and `line` on standard error (encpipe-check: 3, and its plugin line on standard output)."""
    errors = [said for said in err.splitlines() if ": error: " in said]
    assert len(errors) == 1 and errors[0].split(": error: ", 1)[1] == line, err
    assert not [said for said in err.splitlines() if ": error: " not in said and ": hint: " not in said], err
    assert (code, out) == ((3, f"UNKNOWN: {line}\n") if how == "check" else (64, "")), (code, out, err)


@pytest.mark.parametrize("how, argv, value, line", CASES, ids=[f"{c[0]} {' '.join(c[1])}" for c in CASES])
def test_an_ordinary_bad_value_is_still_shown(tmp_path, how, argv, value, line):
    assert_refused(how, *run(tmp_path, how, argv, value), line)


WORDS = [case for case in CASES if f"'{case[2]}'" in case[3]]  # each refused as a word it cannot read


@pytest.mark.parametrize("secret", sorted(SECRETS))
@pytest.mark.parametrize("how, argv, value, line", WORDS, ids=[f"{c[0]} {' '.join(c[1])}" for c in WORDS])
def test_a_key_or_passphrase_given_as_the_value_is_not_shown(tmp_path, how, argv, value, line, secret):
    text, said = SECRETS[secret]
    code, out, err = run(tmp_path, how, argv, text)
    assert_refused(how, code, out, err, line.replace(f"'{value}'", said))
    assert_not_shown(text, out, err)


@pytest.mark.parametrize("value, said", [("1" * 64, "a raw key (a secret, not shown)"), ("9" * 21, VALUE_NOT_SHOWN),
                                         ("9" * 20, "99999999999999999999")])
def test_a_number_out_of_its_range_is_not_shown_when_it_may_be_a_key(tmp_path, value, said):
    """A raw key may be all digits; a long number may be a PIN or passphrase."""
    code, out, err = run(tmp_path, "encpipe", ["seal", "--threads", "V"], value)
    assert_refused("encpipe", code, out, err, f"--threads must be from 1 to 64, not {said}")


def assert_not_shown(text, out, err):
    shown = (out + err).lower()
    for part in {text, text[:12], text[-12:], *(word for word in text.split() if len(word) >= 5)}:
        assert part.lower() not in shown, (part, out, err)
