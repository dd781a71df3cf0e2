"""A restore that an encpipe child refuses says so in ONE line, its own, with the
child's reason folded in: before, the child's `encpipe: error:` line (and its
`hint:` line) reached standard error first, then restore's own, three lines for
one failure (the demo's forgery). The child's hint is the line's hint when the
restore has none of its own; its warnings still reach standard error, failure or not."""

import os
import re
import subprocess
import sys
from pathlib import Path

from test_backup_restore import (backup, dump, ensure_small, leftover_databases, make_legacy_file, python_env,
                                 restore)

from encpipe import childerr


def _encpipe(*args, data=None):
    return subprocess.run([sys.executable, "-m", "encpipe", *args], input=data, check=True, capture_output=True,
                          env=python_env()).stdout


def _key_id(*args):
    return _encpipe("keyid", *args).decode().strip()


def _refused(pg, proc, db, live, status):
    assert (proc.returncode, proc.stdout) == (status, b""), proc.stderr.decode()
    assert dump(pg, db) == live and leftover_databases(pg) == set()
    return proc.stderr.decode()


def test_a_forged_unsigned_backup_is_one_line(pg, tools, key_file, tmp_path):
    """The demo's forgery: a dump sealed with the key by someone without the signing key."""
    verify = _encpipe("keygen", "--sign", "-o", str(tmp_path / "s.sign")).decode().strip()
    signers = tmp_path / "signers"
    signers.write_text(verify + "\n")
    db = ensure_small(pg, "oneline_forged")
    live = dump(pg, db)
    forged = tmp_path / "forged.sql.enc"
    forged.write_bytes(_encpipe("seal", "--key-file", key_file, data=b"DROP TABLE t;\n"))
    proc = restore(pg, tools, str(forged), db, "--key-file", key_file, "--signer-file", str(signers))
    assert _refused(pg, proc, db, live, 67) == (
        f"encpipe-restore: error: cannot decrypt {forged} (status 67): not signed by a trusted signer (unsigned); "
        f"database {db} was not touched\n"
        f"encpipe-restore: hint: trusted: {_key_id('--signer', verify)}\n")


def test_a_backup_no_key_opens_is_one_line_with_the_childs_hint(pg, tools, key_file, tmp_path):
    db = ensure_small(pg, "oneline_wrongkey")
    path, _ = backup(pg, tools, str(tmp_path / "b"), db, "--no-globals", "--key-file", key_file)
    live = dump(pg, db)
    other = tmp_path / "other.key"
    _encpipe("keygen", "-o", str(other))
    proc = restore(pg, tools, path, db, "--key-file", str(other))
    assert _refused(pg, proc, db, live, 77) == (
        f"encpipe-restore: error: cannot decrypt {path} (status 77): no supplied key opens this file; "
        f"database {db} was not touched\n"
        f"encpipe-restore: hint: it can be opened by: raw-key {_key_id('--key-file', key_file)}\n")


def test_a_damaged_backup_is_one_line(pg, tools, key_file, tmp_path):
    db = ensure_small(pg, "oneline_damaged")
    path, _ = backup(pg, tools, str(tmp_path / "b"), db, "--no-globals", "--key-file", key_file)
    live = dump(pg, db)
    sealed = bytearray(Path(path).read_bytes())
    sealed[len(sealed) // 2] ^= 1
    Path(path).write_bytes(bytes(sealed))
    proc = restore(pg, tools, path, db, "--key-file", key_file)
    stderr = _refused(pg, proc, db, live, 65)
    assert re.fullmatch(re.escape(f"encpipe-restore: error: cannot decrypt {path} (status 65): chunk ") + "[0-9]+"
                        + re.escape(" failed authentication: the file is truncated, corrupt or was tampered with; "
                                    f"database {db} was not touched\n"), stderr), stderr


def test_a_refused_globals_file_is_one_line_naming_it(pg, tools, key_file, tmp_path):
    """The child read /dev/fd/N; the line names the globals file."""
    db = ensure_small(pg, "oneline_globals")
    path, _ = backup(pg, tools, str(tmp_path / "b"), db, "--key-file", key_file)
    live = dump(pg, db)
    globals_file = next((tmp_path / "b").glob("*.globals.sql.enc"))
    globals_file.write_bytes(globals_file.read_bytes()[:-1])
    proc = restore(pg, tools, path, db, "--key-file", key_file)
    lines = _refused(pg, proc, db, live, 65).splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"encpipe-restore: error: cannot decrypt the globals file {globals_file} "
                               f"(status 65): "), lines
    assert "/dev/fd/" not in lines[0] and lines[0].endswith(f"; database {db} was not touched")


def test_a_legacy_file_that_does_not_authenticate_is_one_line(pg, tools, tmp_path):
    db = ensure_small(pg, "oneline_legacy")
    live = dump(pg, db)
    path = make_legacy_file(tmp_path / f"{db}_20250101T000000Z.sql.enc", "ab" * 32, b"SELECT 1;\n")
    proc = restore(pg, tools, path, db, env_extra={"BACKUP_ENCRYPTION_KEY": "cd" * 32})
    assert _refused(pg, proc, db, live, 77) == (
        f"encpipe-restore: error: cannot authenticate {path} (status 77): no supplied key authenticates this "
        f"legacy file; database {db} was not touched\n"
        "encpipe-restore: hint: the key is wrong, or the file is damaged or truncated (the old format cannot tell "
        "which); tried: BACKUP_ENCRYPTION_KEY (hex key)\n")


def test_the_childs_warning_still_reaches_stderr_on_success(pg, tools, tmp_path):
    """--allow-unauthenticated with an x25519 identity: encpipe open's warning, as before."""
    identity = tmp_path / "x.id"
    public = _encpipe("keygen", "--x25519", "-o", str(identity)).decode().strip()
    db = ensure_small(pg, "oneline_warns")
    path, _ = backup(pg, tools, str(tmp_path / "b"), db, "--no-globals", "--recipient", public)
    proc = restore(pg, tools, path, db + "_copy", "--allow-unauthenticated", "--identity", str(identity))
    try:
        assert proc.returncode == 0, proc.stderr.decode()
        lines = proc.stderr.decode().splitlines()
        warnings = [line for line in lines if line.startswith("encpipe: warning: ")]
        assert warnings and all("anyone with its public key can make such a file" in w for w in warnings), lines
        assert lines[-1] == f"encpipe-restore: restored {path} into new database {db}_copy", lines
    finally:
        pg.dropdb(db + "_copy")


# --- the relay itself: bounded, nothing lost but what it folds -------------------------------


def test_the_relay_keeps_error_and_hint_and_passes_the_rest(capfd):
    proc, said = childerr.started(subprocess.Popen, [sys.executable, "-c", "import sys; sys.stderr.write("
                                                     "'encpipe: warning: w1\\nencpipe: error: e1\\nencpipe: hint: h1\\n"
                                                     "encpipe: error: e2\\nencpipe: seal: 1 MiB\\n')"])
    proc.wait()
    assert said.wait() == ("e1", "h1")
    assert capfd.readouterr().err == "encpipe: warning: w1\nencpipe: seal: 1 MiB\n"


def test_the_relay_keeps_at_most_line_max_bytes_of_a_huge_error_line(capfd):
    size = 64 * childerr.LINE_MAX
    proc, said = childerr.started(subprocess.Popen, [sys.executable, "-c", "import sys; sys.stderr.write("
                                                     f"'encpipe: error: ' + 'x' * {size} + '\\nencpipe: warning: w\\n')"])
    proc.wait()
    error, hint = said.wait()
    assert hint is None and set(error) == {"x"} and len(error) == childerr.LINE_MAX - len("encpipe: error: ")
    assert capfd.readouterr().err == "encpipe: warning: w\n"


def test_the_relay_closes_its_pipe_when_the_child_cannot_start():
    before = len(os.listdir("/proc/self/fd"))
    try:
        childerr.started(subprocess.Popen, ["/nonexistent/encpipe"])
    except OSError:
        pass
    assert len(os.listdir("/proc/self/fd")) == before
