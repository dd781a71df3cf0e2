"""Secrets hygiene of encpipe itself: argv, file modes, warnings, error messages.

- No key or passphrase ever appears in the argv of encpipe or of anything it
  starts (sampled from /proc/PID/cmdline while a seal of a slow input runs,
  for every non-interactive key source).
- Files written by `keygen -o` (and `seal -o`) are mode 0600 whatever the umask.
- A key, identity or passphrase file readable by group or others draws one
  warning (and a chmod hint) on stderr, and still works.
- Error messages name key ids and sources, never the secret.
- What encpipe does not hide or prevent (README "Security model"): the exact
  plaintext length and the key ids are visible without a key, a whole file
  swapped for another one sealed to the same key opens, and rewrap does not
  revoke an old key's access to older copies or to the unchanged payload.
"""

import os
import stat
import subprocess
import time

import pytest

from fuzz.craft import clean_env, command

KEY = "c0ffee15" * 8
PASSPHRASE = "correct horse battery staple 7d1e"
IDENTITY_SECRET_HEX = "4f" * 32
WAIT = 30


def secret_file(path, text, mode=0o600):
    path.write_text(text)
    path.chmod(mode)
    return str(path)


def _identity():
    from encpipe.x25519 import X25519Identity

    return str(X25519Identity(bytes.fromhex(IDENTITY_SECRET_HEX)))


def _descendants(pid):
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as f:
                    todo += [int(p) for p in f.read().split()]
        except OSError:
            pass
    return found


def _cmdlines(pid):
    lines = []
    for p in _descendants(pid):
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                lines.append(f.read())
        except OSError:
            pass
    return lines


def _sources(tmp_path):
    """name -> (argv options, environment, extra Popen arguments, the secrets in play)."""
    key_file = secret_file(tmp_path / "keys", f"# backup key\n{KEY}\n")
    pass_file = secret_file(tmp_path / "pass", PASSPHRASE + "\n")
    identity = _identity()
    id_file = secret_file(tmp_path / "identity", identity + "\n")
    read_fd, write_fd = os.pipe()
    os.write(write_fd, PASSPHRASE.encode())
    os.close(write_fd)
    slow_key = f"sleep 0.3; cat {key_file}"  # still running when argv is first sampled
    slow_pass = f"sleep 0.3; cat {pass_file}"
    return {
        "ENCPIPE_KEY": ([], {"ENCPIPE_KEY": KEY}, {}, [KEY]),
        "ENCPIPE_PASSPHRASE": ([], {"ENCPIPE_PASSPHRASE": PASSPHRASE}, {}, [PASSPHRASE]),
        "--key-file": (["--key-file", key_file], {}, {}, [KEY]),
        "--key-command": (["--key-command", slow_key], {}, {}, [KEY]),
        "--identity": (["--identity", id_file], {}, {}, [identity, IDENTITY_SECRET_HEX]),
        "--passphrase-file": (["--passphrase-file", pass_file], {}, {}, [PASSPHRASE]),
        "--passphrase-fd": (["--passphrase-fd", str(read_fd)], {}, {"pass_fds": (read_fd,)}, [PASSPHRASE]),
        "--passphrase-command": (["--passphrase-command", slow_pass], {}, {}, [PASSPHRASE]),
    }


SOURCES = [
    "ENCPIPE_KEY",
    "ENCPIPE_PASSPHRASE",
    "--key-file",
    "--key-command",
    "--identity",
    "--passphrase-file",
    "--passphrase-fd",
    "--passphrase-command",
]


@pytest.mark.parametrize("source", SOURCES)
def test_secrets_never_in_argv(tmp_path, source):
    options, env, extra, secrets = _sources(tmp_path)[source]
    out = tmp_path / "out.enc"
    child = subprocess.Popen(
        command("seal", "--work-factor", "10", "--chunk-size", "16K", "-o", str(out), *options),
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_env(env),
        **extra,
    )
    samples = []
    try:
        deadline = time.monotonic() + WAIT
        # Sample through key loading to the header (seal -o writes it to a new
        # hidden file, renamed to out.enc once complete).
        while not any(p.stat().st_size > 0 for p in tmp_path.glob(".encpipe-tmp.*")):
            samples += _cmdlines(child.pid)
            assert child.poll() is None, child.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.01)
        child.stdin.write(os.urandom(40000))  # and while the payload streams
        child.stdin.flush()
        for _ in range(5):
            samples += _cmdlines(child.pid)
            time.sleep(0.02)
        child.stdin.close()
        assert child.wait(timeout=WAIT) == 0, child.stderr.read()
    finally:
        child.kill()
        child.wait()
        for fd in extra.get("pass_fds", ()):
            os.close(fd)
    assert samples and any(b"encpipe" in s for s in samples)
    if source.endswith("-command"):
        assert any(b"sleep 0.3" in s for s in samples), "the command's own argv was never seen"
    for secret in secrets:
        for sample in samples:
            assert secret.encode() not in sample and secret.upper().encode() not in sample, sample


@pytest.mark.parametrize("args", [["keygen"], ["keygen", "--x25519"]])
@pytest.mark.parametrize("umask", [0o000, 0o022])
def test_keygen_output_file_is_0600_whatever_the_umask(tmp_path, args, umask):
    path = tmp_path / "new.key"
    done = subprocess.run(
        command(*args, "-o", str(path)),
        capture_output=True,
        env=clean_env(),
        timeout=WAIT,
        preexec_fn=lambda: os.umask(umask),
    )
    assert done.returncode == 0 and done.stderr == b"", done.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert KEY not in done.stdout.decode()
    secret = path.read_text()
    assert secret.strip().split("\n")[-1] not in done.stdout.decode()  # the secret is only in the file


def test_keygen_refuses_to_overwrite_a_key(tmp_path):
    path = tmp_path / "old.key"
    secret_file(path, KEY + "\n")
    done = subprocess.run(command("keygen", "-o", str(path)), capture_output=True, env=clean_env(), timeout=WAIT)
    assert done.returncode == 64 and path.read_text() == KEY + "\n"


def test_seal_output_file_is_0600_whatever_the_umask(tmp_path):
    path = tmp_path / "out.enc"
    done = subprocess.run(
        command("seal", "-o", str(path)),
        input=b"data",
        capture_output=True,
        env=clean_env({"ENCPIPE_KEY": KEY}),
        timeout=WAIT,
        preexec_fn=lambda: os.umask(0),
    )
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o666], ids=oct)
@pytest.mark.parametrize("option", ["--key-file", "--identity", "--passphrase-file"])
def test_group_or_world_readable_secret_file_warns_but_works(tmp_path, option, mode):
    text = {"--key-file": KEY, "--identity": _identity(), "--passphrase-file": PASSPHRASE}[option]
    path = secret_file(tmp_path / "secret", text + "\n", mode)
    # one others can write too is refused (73, tests/test_key_places.py) unless told: then it is read, and warned of
    allow = ["--allow-shared-dir"] if mode & 0o022 else []
    seal_args = ["seal", *allow, "--work-factor", "10", option, path]
    done = subprocess.run(command(*seal_args), input=b"payload", capture_output=True, env=clean_env(), timeout=WAIT)
    assert done.returncode == 0
    assert done.stderr.decode().splitlines() == [  # before: a hint line too
        f"encpipe: warning: {path} is readable by group or others: chmod 600 {path}",
    ]
    opened = subprocess.run(
        command("open", *allow, option, path), input=done.stdout, capture_output=True, env=clean_env(), timeout=WAIT
    )
    assert (opened.returncode, opened.stdout) == (0, b"payload")
    assert "is readable by group or others" in opened.stderr.decode()


def test_a_command_that_fails_after_the_warning_says_one_error_besides_it(tmp_path):
    """The warning is one line; what fails next is its own error (and its hint),
    as without the warning: before, the warning's own hint made four lines."""
    path = secret_file(tmp_path / "other.key", "ab" * 32 + "\n", 0o644)
    sealed = subprocess.run(command("seal"), input=b"payload", capture_output=True,
                            env=clean_env({"ENCPIPE_KEY": KEY}), timeout=WAIT).stdout
    done = subprocess.run(command("open", "--key-file", path), input=sealed, capture_output=True, env=clean_env(),
                          timeout=WAIT)
    assert (done.returncode, done.stdout) == (77, b"")
    lines = done.stderr.decode().splitlines()
    assert lines[:2] == [f"encpipe: warning: {path} is readable by group or others: chmod 600 {path}",
                         "encpipe: error: no supplied key opens this file"], lines
    assert len(lines) == 3 and lines[2].startswith("encpipe: hint: "), lines


@pytest.mark.parametrize("mode", [0o600, 0o400], ids=oct)
def test_private_secret_file_draws_no_warning(tmp_path, mode):
    path = secret_file(tmp_path / "keys", KEY + "\n", mode)
    done = subprocess.run(command("seal", "--key-file", path), input=b"x", capture_output=True, env=clean_env(),
                          timeout=WAIT)
    assert (done.returncode, done.stderr) == (0, b"")


@pytest.mark.parametrize("mode", [0o640, 0o604], ids=oct)
def test_a_passphrase_on_a_descriptor_from_a_file_others_can_read_is_warned_of(tmp_path, mode):
    """--passphrase-fd N with N opened on such a file is such a passphrase file, as
    --passphrase-file /dev/fd/N is: before, the one warned and the other did not."""
    path = secret_file(tmp_path / "pass", PASSPHRASE + "\n", mode)
    fd = os.open(path, os.O_RDONLY)
    try:
        done = subprocess.run(command("seal", "--work-factor", "10", "--passphrase-fd", str(fd)), input=b"payload",
                              capture_output=True, env=clean_env(), pass_fds=(fd,), timeout=WAIT)
    finally:
        os.close(fd)
    assert done.returncode == 0, done.stderr
    assert done.stderr.decode().splitlines() == [
        f"encpipe: warning: file descriptor {fd} is readable by group or others: chmod 600 the file it reads"]


def test_a_key_file_on_standard_input_that_others_can_read_is_warned_of(tmp_path):
    """`--key-file - < FILE` as `--key-file /dev/stdin < FILE`: before, only the second warned."""
    sealed = subprocess.run(command("seal", "-o", str(tmp_path / "f.enc")), input=b"payload", capture_output=True,
                            env=clean_env({"ENCPIPE_KEY": KEY}), timeout=WAIT)
    assert sealed.returncode == 0, sealed.stderr
    path = secret_file(tmp_path / "keys", KEY + "\n", 0o644)
    with open(path, "rb") as keys:
        done = subprocess.run(command("open", "--key-file", "-", str(tmp_path / "f.enc")), stdin=keys,
                              capture_output=True, env=clean_env(), timeout=WAIT)
    assert (done.returncode, done.stdout) == (0, b"payload"), done.stderr
    assert done.stderr.decode().splitlines() == [
        "encpipe: warning: standard input is readable by group or others: chmod 600 the file it reads"]


def test_a_passphrase_on_a_pipe_draws_no_warning():
    read_end, write_end = os.pipe()
    os.write(write_end, PASSPHRASE.encode() + b"\n")
    os.close(write_end)
    try:
        done = subprocess.run(command("seal", "--work-factor", "10", "--passphrase-fd", str(read_end)),
                              input=b"payload", capture_output=True, env=clean_env(), pass_fds=(read_end,),
                              timeout=WAIT)
    finally:
        os.close(read_end)
    assert (done.returncode, done.stderr) == (0, b"")


def _run_in_process(argv, data=b"", env=None):
    from fuzz.craft import run_in_process

    return run_in_process(argv, data, env)


def test_error_messages_never_echo_the_secret(tmp_path):
    sealed = _run_in_process(["seal"], b"data", {"ENCPIPE_KEY": KEY})[1]
    other = "0f" * 32
    cases = [
        (["open"], sealed, {"ENCPIPE_KEY": other}, other, 77),
        (["open"], sealed, {"ENCPIPE_KEY": KEY[:-1]}, KEY[:-1], 64),
        (["open"], sealed, {"ENCPIPE_KEY": KEY[:-1] + "g"}, KEY[:-1] + "g", 64),
        (["open"], sealed, {"ENCPIPE_PASSPHRASE": PASSPHRASE}, PASSPHRASE, 77),
        (["open", "--key-file", secret_file(tmp_path / "bad", KEY + "0\n")], sealed, {}, KEY + "0", 64),
    ]
    for argv, data, env, secret, status in cases:
        code, out, err = _run_in_process(argv, data, env)
        assert (code, out) == (status, b""), err
        assert secret not in err and secret.upper() not in err, err


@pytest.mark.parametrize("typed", [KEY, PASSPHRASE], ids=["key", "passphrase"])
def test_a_secret_given_as_the_file_to_rewrap_in_place_is_not_shown(tmp_path, monkeypatch, typed):
    """`rewrap --in-place FILE` names FILE as open and inspect do: a key or passphrase
    typed in its place (it names no file) is not shown (before: `cannot open KEY`)."""
    monkeypatch.chdir(tmp_path)
    key = secret_file(tmp_path / "k", KEY + "\n")
    status, out, err = _run_in_process(["rewrap", "--in-place", typed, "--key-file", key])
    assert (status, out) == (66, b""), err
    assert typed not in err and "its name not shown" in err, err


@pytest.mark.parametrize("script", ["rotate", "migrate"])
@pytest.mark.parametrize("typed", ["--sig=" + KEY, "--s=" + PASSPHRASE], ids=["key", "passphrase"])
def test_an_ambiguous_option_given_a_secret_is_not_echoed(capsys, script, typed):
    """An abbreviation that could name several options (`--sig=KEY`: --sign-key,
    --signer, --signer-file) is refused, 64, its value not shown, as an unknown
    option's (before: `ambiguous option: --sig=KEY could match ...`)."""
    from encpipe import migrate, rotate

    parse = {"rotate": rotate.parse_args, "migrate": migrate.parse}[script]
    with pytest.raises(SystemExit) as exited:
        parse({"rotate": ["--new-key-file", "new.key", typed, "DIR"], "migrate": ["--key-file", "k", typed, "DIR"]}[script])
    said = capsys.readouterr()
    assert (exited.value.code, said.out) == (64, ""), said.err
    assert "ambiguous option" in said.err and said.err.count("error: ") == 1, said.err
    assert typed.partition("=")[2] not in said.err, said.err


SCRIPTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts")
TYPED = "hunter2-typed-in-place"  # a passphrase given where an option's value or FILE belongs
DIGITS = "73918264"  # a passphrase of digits, out of --passphrase-fd's range


@pytest.mark.parametrize("argv, status", [
    (["open", "--passphrase-fd", TYPED, "FILE"], 64),
    (["open", "--passphrase-fd", DIGITS, "FILE"], 64),
    (["inspect", "--verify", "--passphrase-fd", TYPED, "FILE"], 64),
    (["open", "-p", TYPED], 66),  # -p takes no value: the passphrase became FILE
    (["inspect", "--verify", "-p", TYPED], 66),
    (["open", "--key-file", "KEY", TYPED * 2 + " with spaces"], 66),
    ([os.path.join(SCRIPTS, "encpipe-restore"), "--passphrase-fd", TYPED, "FILE", "db"], 64),
    ([os.path.join(SCRIPTS, "encpipe-restore"), "--passphrase=" + TYPED, "FILE", "db"], 64),
    ([os.path.join(SCRIPTS, "encpipe-restore"), "-p" + TYPED, "FILE", "db"], 64),
    ([os.path.join(SCRIPTS, "encpipe-restore"), "-p", TYPED, "db"], 66),
    ([os.path.join(SCRIPTS, "encpipe-backup"), "--passphrase-fd", TYPED, "db"], 64),
    ([os.path.join(SCRIPTS, "encpipe-backup"), "-p" + TYPED, "db"], 64),
    (["-x" + TYPED], 64),
    (["--typo=" + TYPED, "open"], 64),
    ([os.path.join(SCRIPTS, "encpipe-rotate"), "--old-key-file", "KEY", "--new-key-file", "KEY", "--typo=" + TYPED,
      "DIR"], 64),
    ([os.path.join(SCRIPTS, "encpipe-rotate"), "--old-key-file", "KEY", "--new-key-file", "KEY", "-x" + TYPED,
      "DIR"], 64),
    ([os.path.join(SCRIPTS, "encpipe-rotate"), "--old-key-file", "KEY", "--new-key-file", "KEY", "--dry-run=" + TYPED,
      "DIR"], 64),
    ([os.path.join(SCRIPTS, "encpipe-migrate"), "--key-file", "KEY", "--typo=" + TYPED, "DIR"], 64),
    ([os.path.join(SCRIPTS, "encpipe-migrate"), "--key-file", "KEY", "-n" + TYPED, "DIR"], 64),
    ([os.path.join(SCRIPTS, "encpipe-migrate"), "--key-file", "KEY", "--keep-originals=" + TYPED, "DIR"], 64),
    ([os.path.join(SCRIPTS, "encpipe-demo"), "--typo=" + TYPED], 64),
    # an unknown option's value given apart, and an extra word: argparse's scripts echoed both
    ([os.path.join(SCRIPTS, "encpipe-rotate"), "--dry-run", "--old-key-file", "KEY", "--new-key-file", "KEY", "DIR",
      "--passphrase", TYPED], 64),
    ([os.path.join(SCRIPTS, "encpipe-rotate"), "--dry-run", "--old-key-file", "KEY", "--new-key-file", "KEY", "DIR",
      TYPED], 64),
    ([os.path.join(SCRIPTS, "encpipe-migrate"), "--dry-run", "--key-file", "KEY", "DIR", "-p", TYPED], 64),
])
def test_a_passphrase_typed_where_a_value_or_file_belongs_is_not_echoed(tmp_path, argv, status):
    sealed = tmp_path / "f.enc"
    sealed.write_bytes(_run_in_process(["seal"], b"data", {"ENCPIPE_KEY": KEY})[1])
    key = secret_file(tmp_path / "k", KEY + "\n")
    argv = [str(sealed) if a == "FILE" else key if a == "KEY" else str(tmp_path) if a == "DIR" else a for a in argv]
    argv = argv if argv[0].startswith("/") else command(*argv)
    env = clean_env({"PYTHONPATH": os.path.dirname(SCRIPTS)})
    done = subprocess.run(argv, capture_output=True, env=env, cwd=tmp_path, stdin=subprocess.DEVNULL, timeout=60)
    err = done.stderr.decode()
    assert (done.returncode, done.stdout) == (status, b""), err
    assert err.count("error: ") == 1 and "Traceback" not in err, err
    assert TYPED not in err and DIGITS not in err, err


@pytest.mark.parametrize("argv", [
    ["encpipe-migrate", "--dry-run", "--key-file", "KEY", "--key-command", "PASTED", "DIR"],
    ["encpipe-migrate", "--key-file", "KEY", "--passphrase-command", "PASTED", "DIR"],
    ["encpipe-restore", "--no-globals", "--key-command", "PASTED", "FILE", "db"],
    ["encpipe-restore", "--no-globals", "--key-file", "KEY", "--passphrase-command", "PASTED", "FILE", "db"],
])
def test_a_key_pasted_as_a_scripts_command_is_refused_before_anything_runs(tmp_path, argv):
    """A key given where a key command belongs: encpipe refuses it (64, not shown), and
    so does each script, before anything runs. Before, encpipe-migrate (--dry-run: 0)
    and encpipe-restore handed it on, `--key-command=KEY` on their encpipe child's
    command line, where `ps` shows it to every user; only that child refused it."""
    sealed = tmp_path / "f.enc"
    sealed.write_bytes(_run_in_process(["seal"], b"data", {"ENCPIPE_KEY": KEY})[1])
    words = {"FILE": str(sealed), "KEY": secret_file(tmp_path / "k", KEY + "\n"), "DIR": str(tmp_path), "PASTED": KEY}
    argv = [os.path.join(SCRIPTS, argv[0]), *(words.get(a, a) for a in argv[1:])]
    env = clean_env({"PYTHONPATH": os.path.dirname(SCRIPTS), "PGHOST": str(tmp_path / "no-server")})
    done = subprocess.run(argv, capture_output=True, env=env, cwd=tmp_path, stdin=subprocess.DEVNULL, timeout=60)
    err = done.stderr.decode()
    assert (done.returncode, done.stdout) == (64, b""), err
    option = next(a for a in argv if a.endswith("-command"))
    assert err.splitlines()[0].endswith("error: %s: a raw key (a secret, not shown), not a command" % option), err
    assert KEY not in err, err


@pytest.mark.parametrize("argv, option", [
    (["encpipe-backup", "--key-file", "KEY", "--to", "offsite:HEX", "db"], "--to"),
    (["encpipe-backup", "--key-file", "KEY", "--to", "offsite:backups/IDENTITY/x", "db"], "--to"),
    (["encpipe-restore", "--key-file", "KEY", "offsite:HEX/shop_20250101T020000Z.sql.enc", "db"], "FILE"),
    (["encpipe-list", "offsite:/HEX"], "DIR"),
    (["encpipe-list", "HEX:backups"], "DIR"),
    (["encpipe-list", "offsite,root=/x:a/b/SIGNING"], "DIR"),
    (["encpipe-verify", "--key-file", "KEY", "offsite:HEX/shop_20250101T020000Z.sql.enc"], "PATH"),
    (["encpipe-list", "offsite:HEX:"], "DIR"),
    (["encpipe-list", "offsite:HEX:x"], "DIR"),
    (["encpipe-list", "offsite:backups:IDENTITY"], "DIR"),
    (["encpipe-list", "offsite:backups/x:IDENTITY"], "DIR"),
    (["encpipe-list", "offsite,x=IDENTITY:b"], "DIR"),
    (["encpipe-list", "offsite:b,IDENTITY"], "DIR"),
    (["encpipe-list", "offsite,HEX:b"], "DIR"),
], ids=["backup-bucket", "backup-folder-identity", "restore", "list-root", "list-name", "list-signing", "verify",
        "hex-colon", "hex-colon-folder", "identity-after-colon", "identity-deeper-colon", "identity-parameter",
        "identity-after-comma", "hex-parameter"])
def test_a_key_pasted_in_a_remotes_path_is_refused_before_rclone_runs(tmp_path, argv, option):
    """A key pasted after a remote's colon (where the bucket or the folder belongs): before,
    it went on rclone's command line, into every error line, and to the object store as a
    bucket's name. Now 64, not shown, before anything runs. A raw key's form (64 hex
    digits) is refused in the remote's name and as the path's first part (a bucket's
    name has 63 characters at most); an identity's or signing key's text form anywhere.
    The path's parts split at colons too: split at slashes only, `offsite:KEY:` and
    `offsite:b:IDENTITY` went on rclone's command line."""
    pasted = {"HEX": KEY, "IDENTITY": _identity(), "SIGNING": "ENCPIPE-SIGNING-KEY-" + "A" * 60}
    words = {"KEY": secret_file(tmp_path / "k", KEY + "\n")}
    argv = [os.path.join(SCRIPTS, argv[0]), *(_pasted(words.get(a, a), pasted) for a in argv[1:])]
    env = clean_env({"PYTHONPATH": os.path.dirname(SCRIPTS), "PGHOST": str(tmp_path / "no-server"),
                     "RCLONE": str(tmp_path / "no-rclone"), "RCLONE_CONFIG_OFFSITE_TYPE": "local"})
    done = subprocess.run(argv, capture_output=True, env=env, cwd=tmp_path, stdin=subprocess.DEVNULL, timeout=60)
    err = done.stderr.decode()
    assert (done.returncode, done.stdout) == (64, b""), err
    assert not any(secret in err for secret in pasted.values()), err
    assert "(a secret, not shown), not a remote's name or path" in err, err
    assert option in err.splitlines()[0], err


def _pasted(word, pasted):
    for name, secret in pasted.items():
        word = word.replace(name, secret)
    return word


def test_64_hex_digits_deeper_in_a_remotes_path_are_a_folders_name(tmp_path):
    """A folder named by 64 hex digits (a SHA-256, a Docker volume's id) below the
    remote's first part: refused as a raw key before (64, every backup to it failed);
    now rclone lists it."""
    from s3server import rclone_binary

    folder = tmp_path / "volumes" / KEY
    folder.mkdir(parents=True)
    env = clean_env({"PYTHONPATH": os.path.dirname(SCRIPTS), "RCLONE": rclone_binary(),
                     "RCLONE_CONFIG_OFFSITE_TYPE": "local", "RCLONE_CONFIG": str(tmp_path / "none.conf")})
    argv = [os.path.join(SCRIPTS, "encpipe-list"), "offsite:%s/volumes/%s" % (tmp_path, KEY)]
    done = subprocess.run(argv, capture_output=True, env=env, cwd=tmp_path, stdin=subprocess.DEVNULL, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, b"[]\n", b"")


@pytest.mark.parametrize("argv", [
    ["open", "--KEY", "FILE"], ["--KEY", "open"], ["open", "--key-fileKEY", "FILE"],
    ["encpipe-list", "--KEY", "DIR"], ["encpipe-backup", "--KEY", "db"], ["encpipe-restore", "--KEY", "FILE", "db"],
    ["encpipe-rotate", "--old-key-file", "FILE", "--new-key-file", "FILE", "--KEY", "DIR"],
    ["encpipe-migrate", "--key-file", "FILE", "--KEY=x", "DIR"],
])
def test_a_key_typed_as_an_option_is_not_shown(tmp_path, argv):
    """`--` and a key (or a passphrase with spaces) where an option belongs: the
    unknown option was named whole, `unknown option --<the key> for open`."""
    words = {"FILE": secret_file(tmp_path / "k", KEY + "\n"), "DIR": str(tmp_path)}
    argv = [w.replace("KEY", KEY) if "KEY" in w else words.get(w, w) for w in argv]
    argv = [os.path.join(SCRIPTS, argv[0]), *argv[1:]] if argv[0].startswith("encpipe-") else command(*argv)
    env = clean_env({"PYTHONPATH": os.path.dirname(SCRIPTS), "PGHOST": str(tmp_path / "no-server")})
    done = subprocess.run(argv, capture_output=True, env=env, cwd=tmp_path, stdin=subprocess.DEVNULL, timeout=60)
    err = done.stderr.decode()
    assert (done.returncode, done.stdout) == (64, b""), err
    assert err.count("error: ") == 1 and "not shown" in err, err
    assert KEY not in err and KEY[:16] not in err, err


# --- what encpipe does not protect against (README "Security model") ----------------------------


@pytest.mark.parametrize("length", [0, 1, 16383, 16384, 16385, 3 * 16384 + 5])
def test_plaintext_length_is_visible_without_a_key(length):
    import json

    from fuzz.craft import run_in_process

    sealed = run_in_process(["seal", "--chunk-size", "16K"], os.urandom(length), {"ENCPIPE_KEY": KEY})[1]
    status, out, err = run_in_process(["inspect", "--json"], sealed, {})
    report = json.loads(out)
    assert status == 0 and report["plaintext_bytes"] == length and report["verified"] is False
    assert report["slots"] == [{"type": "raw-key", "key_id": _key_id(KEY)}]


def _key_id(key_hex):
    from encpipe.slots import key_id

    return key_id(bytes.fromhex(key_hex)).hex()


def test_a_whole_file_swapped_for_another_sealed_to_the_same_key_opens():
    """No rollback or substitution protection: a file authenticates itself, not its name or date."""
    from fuzz.craft import run_in_process

    monday = run_in_process(["seal"], b"monday", {"ENCPIPE_KEY": KEY})[1]
    status, out, _ = run_in_process(["open"], monday, {"ENCPIPE_KEY": KEY})  # read as "tuesday.enc"
    assert (status, out) == (0, b"monday")


def test_rewrap_does_not_revoke_the_old_key_from_older_copies_or_the_payload(tmp_path):
    from fuzz.craft import header_len, run_in_process

    old, new = tmp_path / "old.key", tmp_path / "new.key"
    secret_file(old, KEY + "\n")
    secret_file(new, "5e" * 32 + "\n")
    original = run_in_process(["seal", "--key-file", str(old)], b"payload", {})[1]
    status, rewrapped, err = run_in_process(
        ["rewrap", "--key-file", str(old), "--replace", "--add-key-file", str(new)], original, {}
    )
    assert status == 0, err
    assert run_in_process(["open", "--key-file", str(old)], rewrapped, {})[0] == 77  # this copy: revoked
    assert run_in_process(["open", "--key-file", str(old)], original, {})[1] == b"payload"  # an older copy: not
    # the same payload records under the same payload key: the old header and trailer fit them
    spliced = original[: header_len(original)] + rewrapped[header_len(rewrapped) : -64] + original[-64:]
    assert run_in_process(["open", "--key-file", str(old)], spliced, {})[1] == b"payload"


@pytest.mark.parametrize("option", ["--key-command", "--passphrase-command"])
def test_key_commands_inherit_no_secret_variable(tmp_path, option):
    """A key command that runs `env` sees neither ENCPIPE_KEY nor ENCPIPE_PASSPHRASE
    (nor the previous tool's BACKUP_ENCRYPTION_KEY), but the rest of the environment."""
    seen = tmp_path / "env"
    secret = "a" * 64 if option == "--key-command" else "a passphrase"
    env = {"ENCPIPE_KEY": "b" * 64, "ENCPIPE_PASSPHRASE": "env passphrase", "BACKUP_ENCRYPTION_KEY": "old",
           "UNRELATED_SETTING": "kept"}
    args = ["seal", option, f"env > {seen}; echo '{secret}'", "--work-factor", "10"]
    done = subprocess.run(command(*args), input=b"data", capture_output=True, env=clean_env(env), timeout=60)
    assert done.returncode == 0, done.stderr
    names = {line.split("=", 1)[0] for line in seen.read_text().splitlines()}
    assert "UNRELATED_SETTING" in names
    assert not names & {"ENCPIPE_KEY", "ENCPIPE_PASSPHRASE", "BACKUP_ENCRYPTION_KEY"}


@pytest.mark.parametrize("given, mode", [(["KEY", "KEY"], 0o640), (["MISSING", "KEY"], 0o604)],
                         ids=["given-twice", "after-one-that-cannot-be-looked-at"])
def test_a_scripts_secret_file_others_may_read_is_warned_of_once(tmp_path, monkeypatch, given, mode):
    """One warning per file however many options name it; a path it cannot stat passed
    over, later files still warned of (no child will); then ENCPIPE_MODE_WARNED for the children."""
    from encpipe import keys

    monkeypatch.setenv("ENCPIPE_MODE_WARNED", "0")  # the call sets it to 1: undone after
    key = tmp_path / "key"
    key.write_text("7a" * 32 + "\n")
    key.chmod(mode)
    said = []
    keys.warn_secret_modes([str({"KEY": key, "MISSING": tmp_path / "missing"}[g]) for g in given], said.append)
    assert said == [f"{key} is readable by group or others: chmod 600 {key}"]
    assert os.environ["ENCPIPE_MODE_WARNED"] == "1"
