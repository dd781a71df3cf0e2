"""Each child gets the secrets of our environment it needs, and no other (childenv.child_env):

- a key or passphrase command: the cloud's credentials (AWS_..., GOOGLE_..., AZURE_...:
  it may fetch the key from a cloud's secret store) and the secret stores' tokens
  (VAULT_TOKEN, OP_SESSION_...), not PGPASSWORD nor any RCLONE_ variable, nor encpipe's own;
- an encpipe a script runs (encpipe-rotate's here): encpipe's (none when its key is given
  by an option), the cloud's and the stores' only when its command line gives a key
  command (it runs it: before, every encpipe child got them), never PGPASSWORD nor any
  RCLONE_ variable;
- the helpers of the shell scripts (readlink, dirname): an empty environment.
- the test hook ($ENCPIPE_TEST_HOOK) and encpipe-demo's children (given key
  files and a server that trusts them): no secret.

(The libpq clients, the compressors, rclone and restore's `encpipe open` are
tests/test_secret_leaks.py's, with a PostgreSQL cluster.)

An rclone connection string that gives a credential (`:s3,secret_access_key=...:b`)
is refused (64) by every script option that takes a remote, before anything runs:
the error names the parameter, never its value, and rclone never runs.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import pytest

from encpipe.backup.remotes import parameters
from encpipe.backup.remotes import is_remote, split_file
from cliutil import ok, run
from encpipe import fdsecrets
from fuzz.craft import clean_env, command
from s3server import rclone_binary
from spies import install, records, write
from test_rotate import World, rotate, rotate_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(ROOT, "scripts")
KEY = "5eed" * 16
CLOUD = {"AWS_SECRET_ACCESS_KEY": "aws-secret-0b1f", "AWS_SESSION_TOKEN": "aws-token-77c2",
         "GOOGLE_APPLICATION_CREDENTIALS": "/etc/gcs-creds-4d.json", "AZURE_STORAGE_KEY": "azure-key-e35a"}
OTHERS = {"PGPASSWORD": "libpq-pw-91aa", "RCLONE_CONFIG_PASS": "rclone-pass-2c4e",
          "RCLONE_CONFIG_OFFSITE_SECRET_ACCESS_KEY": "rclone-remote-secret-8d0f"}
ENCPIPE_OWN = {"ENCPIPE_PASSPHRASE": "encpipe-passphrase-6a13", "BACKUP_ENCRYPTION_KEY": "legacy-key-f00d"}
STORE = {"VAULT_TOKEN": "vault-token-51b0", "OP_SERVICE_ACCOUNT_TOKEN": "op-token-e7d2", "OP_SESSION_my": "op-9f31",
         "SOPS_AGE_KEY": "AGE-SECRET-KEY-1SOPS"}  # a secret store's: a key command reads the key with it
EVERY = {**CLOUD, **OTHERS, **ENCPIPE_OWN, **STORE}


def _held(env):
    """The secrets of EVERY that `env` (a spy's record: NAME=VALUE strings) holds, by
    name or by value under another name."""
    values = {v: k for k, v in EVERY.items()}
    return {entry.partition("=")[0] for entry in env if entry.partition("=")[0] in EVERY} | {
        values[v] for entry in env for v in values if v in entry.partition("=")[2]}


@pytest.mark.parametrize("option, output", [("--key-command", KEY), ("--passphrase-command", "a passphrase")])
def test_a_key_command_gets_the_clouds_credentials_and_no_other_secret(tmp_path, option, output):
    log, spy = tmp_path / "log", tmp_path / "key-command"
    write(spy, "key-command", ["/bin/echo", output], log)
    done = subprocess.run(command("seal", "--work-factor", "10", option, str(spy), "-o", str(tmp_path / "out.enc")),
                          input=b"data", capture_output=True, env=clean_env(EVERY), timeout=60)
    assert done.returncode == 0, done.stderr
    [record] = records(log)
    assert _held(record["env"]) == set(CLOUD) | set(STORE), sorted(_held(record["env"]))


def test_the_encpipe_children_of_a_script_get_neither_libpqs_nor_rclones_secrets(tmp_path):
    """encpipe-rotate's encpipe (keyid, rewrap, inspect...), as ENCPIPE names it: a spy.
    Each is given its key by an option (--key-file, --recipient), so it gets neither ENCPIPE_KEY nor
    ENCPIPE_PASSPHRASE, which it would ignore (before, each got both); nor does one that reads
    no key at all: `inspect --json` of each file (no --verify), `keyid --sign-key` (before, these
    two still got both)."""
    world = World(tmp_path)
    world.small()
    log, spy = tmp_path / "log", tmp_path / "encpipe-spy"
    write(spy, "encpipe", [sys.executable, "-m", "encpipe"], log)
    sign_key = str(tmp_path / "keys" / "backup.sign")
    ok(run(["keygen", "--sign", "-o", sign_key]))
    env = rotate_env(ENCPIPE=str(spy), PYTHONPATH=ROOT, ENCPIPE_KEY=KEY, **EVERY)
    done = rotate(["--sign-key", sign_key, *world.args()], env=env)
    assert done.returncode == 0, done.stderr
    world.assert_all_rotated()
    seen = records(log)
    assert {r["argv"][0] for r in seen} >= {"rewrap", "inspect"}, [r["argv"][:1] for r in seen]
    keyed = [r for r in seen if any(w.partition("=")[0] in ("--key-file", "--recipient") for w in r["argv"])]
    assert {r["argv"][0] for r in keyed} >= {"keyid", "rewrap", "inspect"}, [r["argv"][:1] for r in keyed]
    unkeyed = [r["argv"] for r in seen if r not in keyed]
    assert {tuple(a[:2]) for a in unkeyed} == {("inspect", "--json"), ("keyid", "--sign-key=" + sign_key)}, unkeyed
    for record in seen:  # no key command among its words: neither the cloud's nor the stores' secrets
        assert _held(record["env"]) == set(), (record["argv"][:2], _held(record["env"]))
        assert not any(entry.startswith("ENCPIPE_KEY=") or KEY in entry for entry in record["env"]), record["argv"]


@pytest.mark.parametrize("argv, held", [
    (["open", "--key-file", "k"], set()),
    (["open", "--key-command=vault kv get -field=key secret/backup"], set(CLOUD) | set(STORE)),
    (["open", "--passphrase-command", "op read op://ops/backup/passphrase"], set(CLOUD) | set(STORE)),
    (["seal", "--key-file", "k", "--sign-key-command", "sops -d sign.key"], set(CLOUD) | set(STORE)),
    (["inspect", "--json", "--", "--key-command"], set()),  # a file's name, after --
    (["open"], {"ENCPIPE_PASSPHRASE"}),  # its key ours (the previous tool's: only for --legacy)
], ids=["key-file", "key-command", "passphrase-command", "sign-key-command", "after-dashes", "environment"])
def test_an_encpipe_child_gets_the_clouds_and_the_stores_secrets_only_with_a_key_command(argv, held):
    """FdSecrets.spawn, which starts every encpipe child of a script (rotate, migrate,
    restore's): a key command is the one thing in encpipe that reads the cloud's
    credentials or a secret store's token; without one on its command line the child
    gets neither (before, each got both, whatever it was given)."""
    seen = []
    fdsecrets.FdSecrets({}, ()).spawn(["encpipe", *argv], start=lambda a, pass_fds, env: seen.append(env),
                                      env=clean_env(EVERY))
    [env] = seen
    assert _held([f"{k}={v}" for k, v in env.items()]) == held


@pytest.mark.parametrize("script", ["encpipe-backup", "encpipe-restore", "encpipe-demo"])
def test_the_helpers_of_the_shell_scripts_get_an_empty_environment_and_no_descriptor(tmp_path, script):
    """readlink (and the demo's dirname and sed) find the script and print its help: none
    gets a variable of ours, nor a descriptor above 2, here a --passphrase-fd's pipe
    (before, each got every descriptor the script was given). encpipe-backup and
    encpipe-restore start one readlink and no dirname (before: three of each, six
    processes more than needed, in every backup and restore)."""
    log, spies = tmp_path / "log", tmp_path / "spies"
    reals = {tool: f"/usr/bin/{tool}" if os.path.exists(f"/usr/bin/{tool}") else f"/bin/{tool}"
             for tool in ("readlink", "dirname", "sed")}
    install(spies, reals, log)
    env = clean_env({**EVERY, "ENCPIPE_KEY": KEY, "PATH": f"{spies}:{os.environ['PATH']}", "PYTHONPATH": ROOT})
    read_end, write_end = os.pipe()
    os.write(write_end, b"a passphrase on a descriptor\n")
    os.close(write_end)
    try:
        done = subprocess.run([os.path.join(SCRIPTS, script), "--help", "--passphrase-fd", str(read_end)],
                              capture_output=True, env=env, pass_fds=(read_end,), timeout=60)
    finally:
        os.close(read_end)
    assert done.returncode == 0, done.stderr
    seen = records(log)
    if script == "encpipe-demo":
        assert {r["tool"] for r in seen} == {"readlink", "dirname", "sed"}
    else:
        assert [r["tool"] for r in seen] == ["readlink"]
    assert [r["env"] for r in seen] == [[]] * len(seen), [(r["tool"], sorted(_held(r["env"]))) for r in seen]
    assert [sorted(r["fds"]) for r in seen] == [["0", "1", "2"]] * len(seen), [(r["tool"], r["fds"]) for r in seen]


SECRET = "s3cr3t-v4lue-never-shown"
REMOTES = [  # (a remote with a credential, the parameter the error names)
    (f":s3,provider=AWS,access_key_id=AKIA,secret_access_key={SECRET}:bucket", "access_key_id"),
    (f"offsite,password={SECRET}:backups", "password"),
    (f":webdav,url='https://dav.example/a,b:c',bearer_token=\"{SECRET}\":dir", "bearer_token"),
    (f":sftp,host=h,key-file-pass={SECRET}:dir", "key-file-pass"),
    (f":azureblob,account=acct,key={SECRET}:box", "account"),
    (f"b2,Client_Secret={SECRET}:x", "Client_Secret"),
    # a password in a URL's user info (Go's HTTP client sends it as basic auth): before, on rclone's argv
    (f":webdav,url='https://alice:{SECRET}@dav.example/':dir", "a password in a URL"),
    (f":http,url=https://alice:{SECRET}@files.example/:pub", "a password in a URL"),
    # a connection string in a parameter's value (alias's, crypt's `remote`, union's `upstreams`), which rclone
    # makes a remote of: before, its credential went onto rclone's argv, exit 0
    (f":alias,remote=':s3,provider=AWS,secret_access_key={SECRET}:bucket':", "secret_access_key"),
    (f":combine,upstreams='a=/tmp/a b=:s3,session_token={SECRET}:b':", "session_token"),
    # an HTTP header that carries one (http's, webdav's `headers`): before, taken, on rclone's argv
    (f":http,url='https://files.example/',headers='Accept,*/*,Authorization,Bearer {SECRET}':pub",
     "headers (Authorization)"),
]
COMMANDS = [  # how each script is given a remote (FILE: a backup's name appended)
    ("encpipe-backup", ["--to", "REMOTE", "shop"]),
    ("encpipe-backup", ["--dir", "DIR", "--to=REMOTE", "shop"]),
    ("encpipe-backup", ["--systemd-unit", "--to", "REMOTE", "shop"]),
    ("encpipe-list", ["REMOTE"]),
    ("encpipe-list", ["--dir", "REMOTE"]),
    ("encpipe-prune", ["--keep-last", "1", "REMOTE"]),
    ("encpipe-verify", ["REMOTE"]),
    ("encpipe-verify", ["FILE"]),
    ("encpipe-check", ["--max-age", "30", "--dir", "REMOTE"]),
    ("encpipe-restore", ["FILE", "shop"]),
    ("encpipe-list", []),  # ENCPIPE_BACKUP_DIR
]


def run_given_remote(tmp_path, script, args, remote):
    """SCRIPT run with ARGS, REMOTE put where COMMANDS say (rclone a logging fake that
    fails): its run, standard error and the first line of it, after asserting that
    it was refused as a usage error (64; encpipe-check: the plugin's UNKNOWN, 3)."""
    log = tmp_path / "log"
    write(tmp_path / "rclone", "rclone", ["/bin/false"], log)
    env = clean_env({"ENCPIPE_KEY": KEY, "PYTHONPATH": ROOT, "RCLONE": str(tmp_path / "rclone"),
                     "ENCPIPE_BACKUP_DIR": remote})
    argv = [{"FILE": remote + "/shop_20250101T000000Z.sql.enc", "DIR": str(tmp_path / "b")}.get(a, a)
            .replace("REMOTE", remote) for a in args]
    done = subprocess.run([os.path.join(SCRIPTS, script), *argv], stdin=subprocess.DEVNULL, capture_output=True,
                          env=env, cwd=tmp_path, timeout=60)
    err = done.stderr.decode()
    first = err.splitlines()[0]
    unknown = f"UNKNOWN: {first.partition(': error: ')[2]}\n".encode()
    assert (done.returncode, done.stdout) == ((3, unknown) if script == "encpipe-check" else (64, b"")), err
    return done, err, first


@pytest.mark.parametrize("script, args, remote, parameter",
                         [(*COMMANDS[i % len(COMMANDS)], *REMOTES[i % len(REMOTES)])  # every command, every remote
                          for i in range(max(len(COMMANDS), len(REMOTES)))])
def test_a_remote_with_a_credential_in_its_connection_string_is_refused(tmp_path, script, args, remote, parameter):
    done, err, first = run_given_remote(tmp_path, script, args, remote)
    assert SECRET.encode() not in done.stdout
    assert err.count("error: ") == 1 and f"gives {parameter}:" in first, err
    assert "RCLONE_CONFIG_<NAME>_<PARAM>" in err, err
    assert SECRET not in err, err
    assert not (tmp_path / "log").exists()  # rclone never ran
    assert os.listdir(tmp_path) == ["rclone"]  # nothing made (no DIR, no directory named like the remote)


def test_a_connection_string_without_a_credential_is_a_remote(tmp_path):
    """Not refused: a backend made on the fly, parameters that are no secret (a
    quoted value may hold , and :); listed through rclone (before: a local directory
    of that name, which did not exist)."""
    (tmp_path / "db_20250101T000000Z.sql.enc").write_bytes(
        subprocess.run(command("seal"), input=b"x", capture_output=True, env=clean_env({"ENCPIPE_KEY": KEY})).stdout)
    env = clean_env({"PYTHONPATH": ROOT, "RCLONE": rclone_binary()})
    done = subprocess.run([os.path.join(SCRIPTS, "encpipe-list"), f":alias,remote='{tmp_path}':"], capture_output=True,
                          env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert [e["filename"] for e in json.loads(done.stdout)] == ["db_20250101T000000Z.sql.enc"]
    remote = ":s3,provider=AWS,env_auth=true,endpoint='https://s3.example:9000/a,b':bucket/dir"
    assert parameters(remote) == ["provider", "env_auth", "endpoint"]
    assert is_remote(remote) and is_remote(":s3:bucket") and is_remote("offsite,region=eu:x")
    assert split_file(remote + "/db_20250101T000000Z.sql.enc") == (remote, "db_20250101T000000Z.sql.enc")
    assert split_file(":s3,region=eu:name.enc") == (":s3,region=eu:", "name.enc")
    assert split_file("offsite,x='a/b':name.enc") == ("offsite,x='a/b':", "name.enc")
    assert not is_remote("a,b") and not is_remote("/tmp/x:y") and parameters("remote:path,x=y") == []


def test_the_test_hook_gets_no_secret(tmp_path):
    """$ENCPIPE_TEST_HOOK (safefile.hook) swaps files for the tests: encpipe gives it no
    secret of its environment, not even the key of the seal it runs in."""
    log, spy = tmp_path / "log", tmp_path / "hook"
    write(spy, "hook", ["/bin/true"], log)
    env = clean_env({**EVERY, "ENCPIPE_KEY": KEY, "ENCPIPE_TEST_HOOK": f'exec {spy} "$@"'})
    done = subprocess.run(command("seal", "-o", str(tmp_path / "out.enc")), input=b"data", capture_output=True,
                          env=env, timeout=60)
    assert (done.returncode, done.stdout) == (0, b""), done.stderr
    seen = records(log)
    assert [r["argv"][0] for r in seen] == ["created", "written", "verified", "renaming", "renamed"]
    for record in seen:
        assert _held(record["env"]) == set(), (record["argv"][0], _held(record["env"]))
        assert not any(entry.startswith("ENCPIPE_KEY=") or KEY in entry for entry in record["env"])
        assert "ENCPIPE_TEST_HOOK=" + f'exec {spy} "$@"' in record["env"]  # the rest of it is there


def test_the_demos_children_get_no_secret(tmp_path):
    """encpipe-demo gives its tools key files and a server that trusts its socket: a
    child (here psql, a spy first on PATH, in the server's bin directory) gets none of
    the secrets of the demo's environment. The spy fails, and the tour with it (1)."""
    shared = tempfile.mkdtemp(prefix="encpipe-demo-test-")  # the fake server runs as another user when root
    try:
        os.chmod(shared, 0o711)
        bindir, log = os.path.join(shared, "bin"), tmp_path / "log"
        os.mkdir(bindir)
        os.chmod(bindir, 0o755)  # whatever the umask: the fake server's user runs initdb from it
        for name, text in (("initdb", '#!/bin/sh\nmkdir -p "$2"\n'), ("pg_ctl", "#!/bin/sh\nexit 0\n")):
            with open(os.path.join(bindir, name), "w") as f:
                f.write(text)
            os.chmod(os.path.join(bindir, name), 0o755)
        write(pathlib.Path(bindir, "psql"), "psql", ["/bin/false"], log)
        env = clean_env({**EVERY, "ENCPIPE_KEY": KEY, "PG_BINDIR": bindir, "TMPDIR": shared})
        done = subprocess.run([os.path.join(SCRIPTS, "encpipe-demo")], capture_output=True, env=env, timeout=120)
        assert done.returncode == 1, done.stdout.decode()[-2000:] + done.stderr.decode()
        assert "psql -X -q -c 'CREATE DATABASE shop' exited 1, expected 0" in done.stderr.decode()
        [record] = records(log)
        assert _held(record["env"]) == set(), sorted(_held(record["env"]))
        assert not any(entry.startswith("ENCPIPE_KEY=") or KEY in entry for entry in record["env"])
        assert "PGUSER=postgres" in record["env"]  # the rest of the demo's environment is there
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_the_demos_pg_config_gets_no_secret_nor_descriptor(tmp_path):
    """encpipe-demo asks pg_config where the server is, in its shell (as root, whether
    PostgreSQL must be installed: debian.bash) and in its Python (demo.find_bindir):
    neither pg_config gets a secret of the demo's environment, nor a descriptor above 2,
    here a pipe the demo was given (before, the shell's got them all). Not root, the
    shell asks none. The tour then fails at its first psql (1), as above."""
    shared = tempfile.mkdtemp(prefix="encpipe-demo-test-")  # the fake server runs as another user when root
    try:
        os.chmod(shared, 0o711)
        bindir, log, spies = os.path.join(shared, "bin"), tmp_path / "log", tmp_path / "spies"
        os.mkdir(bindir)
        os.chmod(bindir, 0o755)
        for name, text in (("initdb", '#!/bin/sh\nmkdir -p "$2"\n'), ("pg_ctl", "#!/bin/sh\nexit 0\n"),
                           ("psql", "#!/bin/sh\nexit 1\n")):
            with open(os.path.join(bindir, name), "w") as f:
                f.write(text)
            os.chmod(os.path.join(bindir, name), 0o755)
        spies.mkdir()
        says = tmp_path / "says-bindir"
        says.write_text(f"#!/bin/sh\necho {bindir}\n")
        says.chmod(0o755)
        write(spies / "pg_config", "pg_config", [str(says)], log)
        env = clean_env({**EVERY, "ENCPIPE_KEY": KEY, "TMPDIR": shared})
        env.pop("PG_BINDIR", None)
        env["PATH"] = f"{spies}:{os.path.dirname(sys.executable)}:{env['PATH']}"
        read_end, write_end = os.pipe()
        try:
            done = subprocess.run([os.path.join(SCRIPTS, "encpipe-demo")], capture_output=True, env=env,
                                  pass_fds=(read_end,), timeout=120)
        finally:
            os.close(read_end)
            os.close(write_end)
        assert done.returncode == 1, done.stdout.decode()[-2000:] + done.stderr.decode()
        seen = records(log)
        shell_asks = os.geteuid() == 0 and shutil.which("apt-get") is not None  # debian.bash's may_install
        assert len(seen) == 1 + shell_asks, [r["argv"] for r in seen]
        for record in seen:
            assert _held(record["env"]) == set(), sorted(_held(record["env"]))
            assert not any(entry.startswith("ENCPIPE_KEY=") or KEY in entry for entry in record["env"])
            assert sorted(record["fds"]) == ["0", "1", "2"], record["fds"]
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_the_shell_probe_of_encpipe_python_gets_none_of_the_secrets_childenv_py_names(tmp_path):
    """scripts/encpipe-sh-setup asks ENCPIPE_PYTHON whether it can import encpipe without
    starting Python to learn what is secret: it unsets its own list of names and prefixes.
    Every secret variable childenv.py names (a new cloud prefix too) must be one it unsets."""
    from encpipe import childenv

    log, spy = tmp_path / "log", tmp_path / "python3"
    write(spy, "probe", [sys.executable], log)
    named = {name: f"secret-{i}-of-{name.lower()}" for i, name in enumerate(
        (*childenv.SECRET_VARIABLES, *childenv.ENCPIPE_ONLY, *childenv.LIBPQ_VARIABLES, *childenv.CLOUD_VARIABLES,
         childenv.RCLONE_PREFIX + "CONFIG_PASS",
         *childenv.STORE_VARIABLES, *(prefix + "_my" for prefix in childenv.STORE_PREFIXES)))}
    env = clean_env({**named, "ENCPIPE_PYTHON": str(spy), "PYTHONPATH": ROOT})
    done = subprocess.run(["bash", "-c", '. "$1"; encpipe_locate "$1"; printf "%s\\n" "${PYTHON_CMD[@]}"', "probe",
                           os.path.join(SCRIPTS, "encpipe-sh-setup")], capture_output=True, env=env, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, f"{spy}\n".encode(), b"")
    [record] = records(log)
    assert record["argv"][0] == "-c"
    seen = {entry.partition("=")[0] for entry in record["env"]}
    assert sorted(seen & set(named)) == [], "childenv.py names secrets that encpipe-sh-setup's probe does not unset"
    assert not any(value in entry for entry in record["env"] for value in named.values())


def test_the_set_up_of_the_checkouts_venv_gives_its_children_no_secret(tmp_path):
    """scripts/lib/venv.bash (the demo's and the test command's set-up) runs Python
    probes, pip and compileall: none gets a secret of the caller's environment (childenv.py's
    names and prefixes) nor a descriptor above 2. The venv's python here is a spy that
    succeeds without doing anything: a missing stamp makes checkout_venv install."""
    from encpipe import childenv

    root, log = tmp_path / "root", tmp_path / "log"
    (root / ".venv" / "bin").mkdir(parents=True)
    for name in ("setup.cfg", "pyproject.toml"):
        (root / name).write_text("")
    spy = root / ".venv" / "bin" / "python"
    write(spy, "python", ["/bin/true"], log)
    helpers = ("cat", "sha256sum")  # the stamp's hash (before: our whole environment)
    install(tmp_path / "spies", {tool: shutil.which(tool) for tool in helpers}, log)
    named = {name: f"secret-{i}-of-{name.lower()}" for i, name in enumerate(
        (*childenv.SECRET_VARIABLES, *childenv.LIBPQ_VARIABLES, *childenv.CLOUD_VARIABLES,
         childenv.RCLONE_PREFIX + "CONFIG_PASS",
         *childenv.STORE_VARIABLES, *(prefix + "_my" for prefix in childenv.STORE_PREFIXES)))}
    env = clean_env({**named, **EVERY, "ENCPIPE_KEY": KEY, "PROG": "t"})
    env["PATH"] = f"{tmp_path / 'spies'}:{env['PATH']}"
    script = ('. "$1"; exec 7</dev/null; checkout_venv "$2" ""; deps_importable "$3"; fast_importable "$3"; '
              'echo done')
    done = subprocess.run(["bash", "-c", script, "t", os.path.join(SCRIPTS, "lib", "venv.bash"), str(root), str(spy)],
                          capture_output=True, env=env, timeout=60)
    assert (done.returncode, done.stdout) == (0, b"done\n"), done.stderr
    everything = records(log)
    assert {c["tool"] for c in everything} == {"python", *helpers}
    calls = [c for c in everything if c["tool"] == "python"]
    assert [c["argv"][:4] for c in calls] == [["-I", "-m", "pip", "--version"], ["-I", "-c", *calls[1]["argv"][2:4]],
                                               ["-I", "-m", "pip", "install"],
                                               ["-I", "-m", "compileall", "-q"], ["-I", "-c", calls[4]["argv"][2]],
                                               ["-I", "-c", calls[5]["argv"][2]]]
    for call in everything:
        names = {entry.partition("=")[0] for entry in call["env"]}
        assert sorted(names & (set(named) | set(EVERY) | {"ENCPIPE_KEY"})) == [], call["argv"]
        assert not any(value in entry for entry in call["env"] for value in (*named.values(), *EVERY.values(), KEY))
        assert "7" not in call["fds"], call["fds"]  # the caller's descriptor


@pytest.mark.parametrize("argv, reads_none", [
    (["python3", "-m", "encpipe", "inspect", "--json"], True),
    (["encpipe", "inspect", "--legacy", "FILE"], True),
    (["encpipe", "inspect", "--json", "--verify"], False),
    (["encpipe", "inspect", "--legacy", "--verify", "FILE"], False),
    (["encpipe", "keyid", "--sign-key=FILE"], True),
    (["encpipe", "keyid", "--signer-file", "FILE"], True),
    (["encpipe", "keyid"], False),  # the check of ENCPIPE_KEY
    (["encpipe", "open", "--legacy", "FILE"], False),
    (["encpipe", "rewrap", "--add-key-file=FILE"], False),  # opened with the environment's key
    (["encpipe", "inspect", "--", "--verify"], True),
])
def test_a_child_that_reads_no_key_is_known_and_one_that_reads_the_environments_is_not(argv, reads_none):
    """fdsecrets.reads_no_key: a child it names gets none of ENCPIPE_KEY, ENCPIPE_PASSPHRASE and
    the previous tool's key; one that would read them is never named (it would fail, 78)."""
    assert fdsecrets.reads_no_key(argv) is reads_none


def test_a_file_named_as_a_key_option_after_the_end_of_options_names_no_key():
    """A FILE after "--" is no key option: else the child loses ENCPIPE_KEY and finds no key (78)."""
    assert not fdsecrets.names_a_key(["encpipe", "open", "--", "--key-file=shop.sql.enc"])
    assert not fdsecrets.names_a_key(["encpipe", "inspect", "--verify", "--", "-p"])
    assert fdsecrets.names_a_key(["encpipe", "open", "--key-file=K", "--", "shop.sql.enc"])
