"""What encpipe-backup and encpipe-restore never do, observed from outside.

- No plaintext file: every file opened for writing (under strace) is the sealed
  output or its temporary name, or /dev/null or /dev/tty.
- No secret in any process's argv, nor in the environment (or open file
  descriptors) of pg_dump, psql or pg_restore: /proc is sampled while they run.
- The systemd units are hardened and deliver the key as a credential file.
"""

import configparser
import os
import re
import shutil
import subprocess
import time

import pytest

from cliutil import descendants, read_proc
from encpipe.backup.names import MARKER

from test_backup_restore import (
    BACKUP,
    REPO,
    RESTORE,
    dump,
    ensure_awkward,
    ensure_small,
    leftover_databases,
    make_legacy_file,
    read_key,
    script_env,
)

PG_CLIENTS = {"pg_dump", "psql", "pg_restore"}
PIPE_ONLY = {"pg_dump", "zstd", "gzip"}
TOOLS = PG_CLIENTS | PIPE_ONLY | {"pg_dumpall", "rclone"}
TRACED = "open,openat,openat2,creat,rename,renameat,renameat2,link,linkat,symlink,symlinkat,mknod,mknodat,truncate"
WRITE_FLAGS = {"O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND"}
HARMLESS = {"/dev/null", "/dev/tty"}
SYSTEMD = REPO / "scripts" / "systemd"


# --- strace: files opened for writing ---------------------------------------------


def _paths(args):
    """The paths a traced call names, a name relative to a directory's descriptor
    (shown by strace -y as N</its/path>) joined to that directory's path."""
    found = []
    for m in re.finditer(r'(?:(?:\d+<(?P<dir>[^>]*)>|AT_FDCWD),\s*)?"(?P<path>(?:[^"\\]|\\.)*)"', args):
        path = m["path"].encode().decode("unicode_escape")
        found.append(os.path.join(m["dir"], path) if m["dir"] else path)
    return found


def _traced(argv, env, tmp_path):
    assert shutil.which("strace"), "strace is needed (.ci/run installs it)"
    prefix = tmp_path / "trace"
    proc = subprocess.run(["strace", "-f", "-ff", "-qq", "-y", "-s", "4096", "-e", "trace=" + TRACED,
                           "-o", str(prefix), "--", *map(str, argv)], env=env, capture_output=True, timeout=300)
    writes, renames, others = set(), [], []
    for trace in tmp_path.glob("trace.*"):
        for line in trace.read_text(errors="replace").splitlines():
            call = re.match(r"^(\w+)\((.*)\)\s+=\s+(-?\w+)", line)
            if not call:
                continue
            name, args = call.group(1), call.group(2)
            paths = _paths(args)
            if name.startswith("open") or name == "creat":
                if name == "creat" or WRITE_FLAGS & set(re.findall(r"\bO_[A-Z]+\b", args)):
                    writes.add(paths[0])
            elif name.startswith("rename"):
                renames.append(tuple(paths))
            else:
                others.append(line)
    return proc, writes, renames, others


def test_backup_and_restore_write_no_plaintext_file(pg, tools, key_file, tmp_path):
    db = ensure_small(pg, "bk_traced", rows=3000)
    directory = tmp_path / "b"
    env = script_env(pg, tools)
    proc, writes, renames, others = _traced([BACKUP, "--dir", directory, "--key-file", key_file, db], env, tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()
    gfinal, final = sorted(str(directory / n) for n in os.listdir(directory) if n != MARKER)  # globals, then the dump
    assert gfinal.endswith(".globals.sql.enc") and final.endswith(".sql.zst.enc")
    temps = {p for p in writes if re.fullmatch(re.escape(str(directory)) + r"/\.encpipe-tmp\.\w+", p)}
    assert len(temps) == 3  # the globals', the dump's and (the location's first backup) the cluster marker's
    assert writes - HARMLESS == temps  # the final names come only from the renames
    assert sorted(new for _, new in renames) == [str(directory / MARKER), gfinal, final]
    assert {old for old, _ in renames} == temps
    assert others == []

    restored = "bk_traced_copy"
    pg.dropdb(restored)
    trace_dir, spool = tmp_path / "restore", tmp_path / "spool"
    trace_dir.mkdir()
    spool.mkdir()
    env["TMPDIR"] = str(spool)
    proc, writes, renames, others = _traced([RESTORE, "--key-file", key_file, final, restored], env, trace_dir)
    assert proc.returncode == 0, proc.stderr.decode()
    # `open --verify-first` keeps the first pass's witnesses (a MAC per record, no
    # plaintext) in an unnamed file (O_TMPFILE in TMPDIR; Python's tempfile first probes
    # the directory with a file of its own): nothing else is written, nothing is left.
    assert str(spool) in writes and all(os.path.dirname(p) == str(spool) for p in writes - HARMLESS - {str(spool)})
    assert os.listdir(spool) == []
    assert renames == [] and others == []
    assert dump(pg, restored) == dump(pg, db)
    pg.dropdb(restored)


# --- /proc sampling: argv, environment, descriptors ---------------------------------


def _fd_targets(pid):
    targets = set()
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                targets.add(os.readlink("/proc/%d/fd/%s" % (pid, fd)))
            except OSError:
                pass
    except OSError:
        pass
    return targets


def _extra_pipes(pid):
    """The pipes process `pid` holds open beyond standard input, output and error."""
    found = []
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            if int(fd) > 2 and target.startswith("pipe:"):
                found.append((int(fd), target))
    except OSError:
        pass
    return found


def _watch(argv, env, secret, pass_fds=(), secret_pipe=None):
    """Run argv, sampling its process tree until it exits; return (proc, stderr, pg clients seen)."""
    proc = subprocess.Popen([str(a) for a in argv], env=env, pass_fds=pass_fds,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for fd in pass_fds:
        os.close(fd)
    seen = set()
    while proc.poll() is None:
        for pid in descendants(proc.pid):
            comm = (read_proc(pid, "comm") or b"").strip().decode()
            cmdline = read_proc(pid, "cmdline")
            assert cmdline is None or secret not in cmdline, (comm, cmdline)
            if secret_pipe is not None and comm in TOOLS:
                # no tool holds the passphrase pipe; the backup's pipeline
                # children hold their pipeline's pipes and no other
                assert secret_pipe not in _fd_targets(pid), cmdline
                assert comm not in PIPE_ONLY or _extra_pipes(pid) == [], cmdline
            if comm not in PG_CLIENTS:
                continue
            environ = read_proc(pid, "environ")
            if environ is None:
                continue
            seen.add(comm)
            assert secret not in environ, comm
            for name in (b"ENCPIPE_KEY=", b"ENCPIPE_PASSPHRASE=", b"BACKUP_ENCRYPTION_KEY="):
                assert name not in environ, (comm, name)
            assert secret_pipe is None or secret_pipe not in _fd_targets(pid), comm
        time.sleep(0.002)
    errors = proc.stderr.read()
    proc.stderr.close()
    return proc, errors, seen


@pytest.mark.parametrize("fmt, source", [("plain", "key"), ("custom", "passphrase"), ("plain", "passphrase-fd")])
def test_secrets_never_reach_argv_or_pg_clients(pg, tools, key_file, tmp_path, fmt, source):
    db = ensure_awkward(pg)
    env = script_env(pg, tools)
    options = ["--work-factor", "10"]
    if source == "key":
        secret = read_key(key_file).encode()
        env["ENCPIPE_KEY"] = secret.decode()
        options = []
    else:
        secret = b"secret passphrase for the hygiene test"
        env["ENCPIPE_PASSPHRASE"] = secret.decode()

    def fd_options():
        if source != "passphrase-fd":
            return [], (), None
        read_end, write_end = os.pipe()
        os.write(write_end, secret + b"\n")
        os.close(write_end)
        os.set_inheritable(read_end, True)
        return ["--passphrase-fd", str(read_end)], (read_end,), ("pipe:[%d]" % os.fstat(read_end).st_ino)

    directory = tmp_path / "b"
    extra, fds, pipe = fd_options()
    proc, errors, seen = _watch([BACKUP, "--dir", directory, "--format", fmt, *options, *extra, db],
                                env, secret, fds, pipe)
    assert proc.returncode == 0, errors.decode()
    assert "pg_dump" in seen
    (final,) = [directory / n for n in os.listdir(directory) if ".globals." not in n and n != MARKER]

    restored = "bk_hygiene_copy"
    pg.dropdb(restored)
    extra, fds, pipe = fd_options()
    proc, errors, seen = _watch([RESTORE, *extra, final, restored], env, secret, fds, pipe)
    assert proc.returncode == 0, errors.decode()
    assert ("pg_restore" if fmt == "custom" else "psql") in seen
    assert leftover_databases(pg) == set()
    pg.dropdb(restored)


def test_legacy_key_from_the_environment_never_reaches_psql(pg, tools, key_file, tmp_path):
    db = ensure_awkward(pg)
    secret = read_key(key_file)
    path = make_legacy_file(tmp_path / "legacy.sql.enc", secret, dump(pg, db))
    env = script_env(pg, tools, BACKUP_ENCRYPTION_KEY=secret)
    pg.dropdb("bk_hygiene_legacy")
    proc, errors, seen = _watch([RESTORE, path, "bk_hygiene_legacy"], env, secret.encode())
    assert proc.returncode == 0, errors.decode()
    assert "psql" in seen
    assert dump(pg, "bk_hygiene_legacy") == dump(pg, db)
    pg.dropdb("bk_hygiene_legacy")


# --- systemd units -----------------------------------------------------------------


def _unit(name):
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str
    parser.read_string((SYSTEMD / name).read_text().replace("\\\n", " "))
    return parser


def test_systemd_units_are_hardened_and_use_a_credential():
    service, timer = _unit("encpipe-backup@.service")["Service"], _unit("encpipe-backup@.timer")["Timer"]
    for key, value in {"NoNewPrivileges": "yes", "PrivateTmp": "yes", "ProtectSystem": "strict",
                       "Type": "oneshot", "UMask": "0077"}.items():
        assert service.get(key) == value, key
    credential, _, source = service["LoadCredential"].partition(":")
    assert source.startswith("/")
    command = service["ExecStart"].split()
    assert "${CREDENTIALS_DIRECTORY}/%s" % credential == command[command.index("--key-file") + 1]
    assert command[command.index("--dir") + 1] in service["ReadWritePaths"].split()
    assert command[0].endswith("/encpipe-backup") and command[-1] == "%I"
    assert "ENCPIPE_KEY" not in (SYSTEMD / "encpipe-backup@.service").read_text()
    assert timer.get("OnCalendar") == "*-*-* 02:00:00"
    assert timer.get("Persistent") == "true"
    assert _unit("encpipe-backup@.timer")["Install"]["WantedBy"] == "timers.target"


def test_systemd_units_verify(tmp_path):
    assert shutil.which("systemd-analyze"), "systemd-analyze is needed"
    service = (SYSTEMD / "encpipe-backup@.service").read_text()
    # BACKUP as one word of ExecStart=, were the checkout at '/tmp/a b': quoted, \ " and % escaped
    word = '"%s"' % BACKUP.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    service = re.sub(r"^ExecStart=\S+", lambda _: "ExecStart=" + word, service, flags=re.M)
    (tmp_path / "encpipe-backup@shop.service").write_text(service)
    shutil.copy(SYSTEMD / "encpipe-backup@.timer", tmp_path / "encpipe-backup@shop.timer")
    proc = subprocess.run(["systemd-analyze", "verify", "./encpipe-backup@shop.service", "./encpipe-backup@shop.timer"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "encpipe-backup" not in proc.stderr, proc.stderr  # no warning about our units
