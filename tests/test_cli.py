"""Acceptance 4-7 and 9: keys, errors, exit codes and the edges of the command line."""

import io
import json
import os
import pty
import shlex
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cliutil import KEY_A, KEY_B, assert_one_line_error, key_env, run, run_process, seal, secret_file
from encpipe import envelope

CHUNK = 16 * 1024
DATA = os.urandom(3 * CHUNK + 17)


@pytest.fixture(scope="module")
def sealed():
    return seal(DATA, args=["--chunk-size", "16K"])


@pytest.fixture
def sealed_file(tmp_path, sealed):
    path = tmp_path / "f.enc"
    path.write_bytes(sealed)
    return str(path)


# --- keys -------------------------------------------------------------------


def test_wrong_key_is_77_with_nothing_on_stdout(sealed):
    result = run(["open"], sealed, key_env(KEY_B))
    assert (result.code, result.stdout) == (77, b"")
    assert_one_line_error(result.stderr)
    assert "no supplied key opens this file" in result.stderr


def test_wrong_key_hint_names_the_needed_key_id(sealed):
    key_id = run(["keyid"], env=key_env()).stdout.decode().strip()
    assert key_id in run(["open"], sealed, key_env(KEY_B)).stderr


def test_wrong_passphrase_is_77(sealed):
    sealed_pw = seal(b"x", {"ENCPIPE_PASSPHRASE": "right"}, ["--work-factor", "10"])
    result = run(["open"], sealed_pw, {"ENCPIPE_PASSPHRASE": "wrong"})
    assert (result.code, result.stdout) == (77, b"")


@pytest.mark.parametrize("command", [["seal"], ["open"], ["inspect", "--verify"], ["keyid"]])
def test_no_key_configured_is_78(command, sealed):
    result = run(command, sealed, env={})
    assert (result.code, result.stdout) == (78, b"")
    assert_one_line_error(result.stderr)


def test_seal_without_key_creates_no_output_file(tmp_path):
    out = tmp_path / "out.enc"
    result = run(["seal", "-o", str(out)], b"data", env={})
    assert result.code == 78
    assert not out.exists()


@pytest.mark.parametrize(
    "bad, words",
    [("a" * 63, "64 hex characters, not 63"), ("a" * 65, "not 65"), ("g" * 64, "hex characters"), ("", "not 0")],
)
def test_malformed_key_is_a_usage_error_naming_the_problem(bad, words, sealed):
    for command in (["seal"], ["open"]):
        result = run(command, sealed, {"ENCPIPE_KEY": bad})
        assert (result.code, result.stdout) == (64, b"")
        assert "ENCPIPE_KEY" in result.stderr and words in result.stderr
        assert_one_line_error(result.stderr)


def test_malformed_key_file_names_the_file_and_line(tmp_path, sealed):
    path = secret_file(tmp_path, "ring", f"# ops key\n{KEY_A}\nnot-a-key\n")
    result = run(["open", "--key-file", path], sealed)
    assert result.code == 64
    assert f"{path}, line 3" in result.stderr


def test_keyring_with_comments_and_several_keys(tmp_path, sealed):
    path = secret_file(tmp_path, "ring", f"# old\n{KEY_B}\n\n# current\n{KEY_A}\n")
    assert run(["open", "--key-file", path], sealed).stdout == DATA


def test_missing_key_file_is_66(sealed):
    result = run(["open", "--key-file", "/nonexistent/key"], sealed)
    assert (result.code, result.stdout) == (66, b"")


def test_world_readable_key_file_warns_but_works(tmp_path, sealed):
    path = secret_file(tmp_path, "k", KEY_A, mode=0o644)
    result = run(["open", "--key-file", path], sealed)
    assert result.code == 0 and result.stdout == DATA
    assert "encpipe: warning:" in result.stderr and "readable by group or others" in result.stderr


def test_explicit_key_option_overrides_environment(tmp_path, sealed):
    path = secret_file(tmp_path, "k", KEY_A)
    assert run(["open", "--key-file", path], sealed, {"ENCPIPE_KEY": "bad"}).code == 0


def test_key_command(sealed):
    assert run(["open", "--key-command", f"echo {KEY_A}"], sealed).stdout == DATA


def test_failing_key_command_is_66(sealed):
    result = run(["open", "--key-command", "exit 3"], sealed)
    assert (result.code, result.stdout) == (66, b"")
    assert "status 3" in result.stderr


def test_passphrase_command_and_fd(tmp_path):
    sealed_pw = seal(b"hello", {}, ["--passphrase-command", "printf 'pw\\n'", "--work-factor", "10"])
    read_fd, write_fd = os.pipe()
    os.write(write_fd, b"pw\n")
    os.close(write_fd)
    try:
        assert run(["open", "--passphrase-fd", str(read_fd)], sealed_pw).stdout == b"hello"
    finally:
        os.close(read_fd)


@pytest.mark.parametrize("source", [["--passphrase-fd", "0"], ["--key-file", "-"], ["--key-file", "/dev/stdin"]])
def test_stdin_cannot_be_both_data_and_secret(source, sealed):
    for command in (["seal"], ["open"]):
        result = run([*command, *source], sealed)
        assert (result.code, result.stdout) == (64, b"")
        assert "standard input" in result.stderr


def test_stdin_secret_is_fine_when_data_is_a_file(tmp_path, sealed_file):
    done = run_process(["open", "--key-file", "-", sealed_file], stdin=KEY_A.encode())
    assert (done.returncode, done.stdout) == (0, DATA)


def test_keygen_and_keyid(tmp_path):
    out = tmp_path / "new.key"
    assert run(["keygen", "-o", str(out)]).code == 0
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    key = out.read_text().strip()
    assert len(key) == 64 and int(key, 16) >= 0
    again = run(["keygen", "-o", str(out)])
    assert again.code == 64 and "already exists" in again.stderr
    key_id = run(["keyid", "--key-file", str(out)]).stdout.decode().strip()
    sealed = seal(b"x", key_env(key))
    assert json.loads(run(["inspect", "--json"], sealed).stdout)["slots"] == [{"type": "raw-key", "key_id": key_id}]


@pytest.mark.parametrize("kind", [[], ["--x25519"], ["--sign"]], ids=["raw", "x25519", "sign"])
def test_keygen_makes_its_file_durable_in_its_directory(tmp_path, monkeypatch, kind):
    """The key file's name is made durable (an fsync of its directory) once the file is
    written, before its public half is printed: before, the file alone was fsync'd, and
    a crash after the print (whose recipient then sealed backups) could lose the
    identity's name, as seal -o's rename and a backup's never are."""
    synced, fsync = [], os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.fstat(fd).st_ino) or fsync(fd))
    assert run(["keygen", *kind, "-o", str(tmp_path / "k")]).code == 0
    assert synced == [os.stat(tmp_path / "k").st_ino, os.stat(tmp_path).st_ino]


def test_keygen_prints_a_fresh_key_each_time():
    first, second = run(["keygen"]).stdout, run(["keygen"]).stdout
    assert len(first) == 65 and first != second


# --- inputs and outputs ------------------------------------------------------


def test_output_file_is_created_with_mode_0600(tmp_path):
    out = tmp_path / "o.enc"
    assert run(["seal", "-o", str(out)], DATA, key_env()).code == 0
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    assert run(["open", str(out)], env=key_env()).stdout == DATA


def test_open_reads_a_file_argument(sealed_file):
    assert run(["open", sealed_file], env=key_env()).stdout == DATA


def test_missing_input_file_is_66():
    result = run(["open", "/nonexistent/f.enc"], env=key_env())
    assert (result.code, result.stdout) == (66, b"")


def test_refuses_to_write_ciphertext_to_a_terminal():
    leader, follower = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "encpipe", "seal"],
            input=b"x",
            stdout=follower,
            stderr=subprocess.PIPE,
            env={**os.environ, "ENCPIPE_KEY": KEY_A},
        )
    finally:
        os.close(follower)
        os.close(leader)
    assert done.returncode == 64
    assert b"terminal" in done.stderr


@pytest.mark.parametrize("command", [["open"], ["inspect"]])
@pytest.mark.parametrize("data", [b"", b"E", b"ENCPIPE", b"ENCPIPE\x02rest", b"hello world\n" * 10, os.urandom(300)])
def test_garbage_and_empty_input_is_65_with_one_line(command, data):
    result = run(command, data, key_env())
    assert (result.code, result.stdout) == (65, b"")
    assert_one_line_error(result.stderr)


def test_unknown_version_is_named(sealed):
    result = run(["open"], sealed[:7] + b"\x07" + sealed[8:], key_env())
    assert result.code == 65 and "unsupported format version 7" in result.stderr


def test_not_an_encpipe_file_is_named():
    assert "not an encpipe file" in run(["inspect"], b"PGDMP....", key_env()).stderr


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_crash_open_or_inspect(data):
    for command in (["open"], ["inspect"], ["inspect", "--verify"]):
        result = run(command, data, key_env())
        assert result.code == 65 and result.stdout == b""
        assert_one_line_error(result.stderr)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_valid_files_never_crash(sealed, data):
    mutated = bytearray(sealed)
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(mutated) - 1))
        mutated[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(mutated)))
    candidate = bytes(mutated[:cut])
    result = run(["open"], candidate, key_env())
    if candidate == sealed:
        assert result.code == 0
    else:
        assert result.code == 65
        assert_one_line_error(result.stderr)


def test_open_into_a_closed_pipe_exits_quietly(sealed_file):
    done = subprocess.run(
        f"{shlex.quote(sys.executable)} -m encpipe open {sealed_file} | head -c 10 | wc -c; echo \"${{PIPESTATUS[0]}}\"",
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        env={**os.environ, "ENCPIPE_KEY": KEY_A},
    )
    count, status = done.stdout.decode().split()
    assert count == "10"
    assert status in ("0", "141")
    assert done.stderr == b""


def test_seal_to_dev_full_is_74():
    with open("/dev/full", "wb") as full:
        done = subprocess.run(
            [sys.executable, "-m", "encpipe", "seal"],
            input=DATA,
            stdout=full,
            stderr=subprocess.PIPE,
            env={**os.environ, "ENCPIPE_KEY": KEY_A},
        )
    assert done.returncode == 74
    assert_one_line_error(done.stderr.decode())


def test_verify_first_writes_nothing_when_the_last_chunk_is_corrupt(tmp_path, sealed):
    path = tmp_path / "bad.enc"
    bad = bytearray(sealed)
    bad[-65] ^= 1  # the last byte of the last chunk, before the 64-byte trailer
    path.write_bytes(bad)
    piped = run_process(["open"], stdin=bytes(bad), env=key_env())
    assert piped.returncode == 65 and piped.stdout == DATA[: 3 * CHUNK]  # a pipe streams
    for args in (["open", str(path)], ["open", "--verify-first", str(path)]):
        result = run(args, env=key_env())
        assert (result.code, result.stdout) == (65, b""), args
    spooled = run_process(["open", "--verify-first"], stdin=bytes(bad), env=key_env())
    assert (spooled.returncode, spooled.stdout) == (65, b"")


def test_a_file_with_another_slot_writes_nothing_when_its_last_chunk_is_corrupt(tmp_path):
    """Another slot's holder has the file key, so the chunk tags cannot tell who made
    the file: it is checked whole (the raw key's authenticator) before any output."""
    a, b = (secret_file(tmp_path, name, key + "\n") for name, key in (("a.key", KEY_A), ("b.key", KEY_B)))
    sealed = seal(DATA, args=["--chunk-size", "16K", "--key-file", a, "--key-file", b])
    path = tmp_path / "bad.enc"
    bad = bytearray(sealed)
    bad[-97] ^= 1  # the last byte of the last chunk, before the two authenticators and the MAC
    path.write_bytes(bad)
    for env in (key_env(KEY_A), key_env(KEY_B)):
        assert run(["open"], sealed, env=env).stdout == DATA
        result = run(["open", str(path)], env=env)
        assert (result.code, result.stdout) == (65, b"")


def test_verify_first_on_a_good_file(sealed_file):
    assert run(["open", "--verify-first", sealed_file], env=key_env()).stdout == DATA


def test_verify_first_spools_a_pipe(sealed):
    result = run_process(["open", "--verify-first"], stdin=sealed, env=key_env())
    assert (result.returncode, result.stdout) == (0, DATA), result.stderr


# --- inspect -----------------------------------------------------------------


def test_inspect_json_needs_no_key(tmp_path):
    phrase = secret_file(tmp_path, "p", "pw")
    sealed = seal(DATA, {}, ["--key-file", secret_file(tmp_path, "k", KEY_A), "--passphrase-file", phrase,
                             "--work-factor", "10", "--chunk-size", "16K"])
    report = json.loads(run(["inspect", "--json"], sealed, env={}).stdout)
    key_id = run(["keyid"], env=key_env()).stdout.decode().strip()
    assert report["slots"] == [
        {"type": "raw-key", "key_id": key_id},
        {"type": "passphrase", "kdf": "scrypt", "log2_n": 10, "r": 8, "p": 1},
    ]
    assert report["version"] == 2 and report["chunk_size"] == CHUNK
    assert report["plaintext_bytes"] == len(DATA) and report["chunks"] == 4
    assert report["verified"] is False and report["sender_authenticated"] is None
    assert report["signers"] == []


def test_inspect_verify_reports_plaintext_size(sealed):
    result = run(["inspect", "--json", "--verify"], sealed, key_env())
    report = json.loads(result.stdout)
    assert result.code == 0
    assert (report["verified"], report["plaintext_bytes"], report["chunks"]) == (True, len(DATA), 4)


def test_inspect_text_output(sealed):
    text = run(["inspect"], sealed).stdout.decode()
    assert "version: 2" in text and "slot 1: raw-key " in text and f"plaintext bytes: {len(DATA)}" in text


@pytest.mark.parametrize(
    "mutate",
    [
        lambda s: s,
        lambda s: s[:-1],
        lambda s: s + b"x",
        lambda s: s[:50] + bytes([s[50] ^ 1]) + s[51:],
        lambda s: s[:-20] + bytes([s[-20] ^ 1]) + s[-19:],
        lambda s: b"junk",
    ],
)
@pytest.mark.parametrize("env", [key_env(), key_env(KEY_B), {}])
def test_inspect_verify_exit_codes_match_open(sealed, mutate, env):
    data = mutate(sealed)
    opened = run(["open"], data, env)
    verified = run(["inspect", "--verify"], data, env)
    assert verified.code == opened.code
    if verified.code:
        assert verified.stdout == b""


# --- usage -------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [["frobnicate"], ["seal", "--chunk-size", "1000"], ["seal", "--chunk-size", "32M"], ["seal", "--threads", "0"],
     ["seal", "--work-factor", "30"], ["seal", "--key", "abc"], [], ["help", "seal", "open"], ["help", "nosuch"],
     ["seal", "--chunk-size", "0"], ["seal", "--chunk-size", "00"], ["seal", "--chunk-size", "0K"]],
)
def test_usage_errors_are_64(argv):
    """A chunk size of 0 (any spelling) was a traceback (a negative shift), status 1."""
    result = run(argv, b"", key_env())
    assert (result.code, result.stdout) == (64, b"")
    assert "Traceback" not in result.stderr


def test_help_and_version():
    assert run(["--help"]).code == 0
    assert run(["--version"]).code == 0


def test_the_top_level_options_may_be_abbreviated_as_a_command_s_may():
    """`encpipe --he` is `encpipe --help`, `--ver` `--version`, as a command's long
    options may be abbreviated (README); they were `unknown option --he before a command`."""
    assert (run(["--h"]).code, run(["--hel"]).stdout) == (0, run(["--help"]).stdout)
    assert (run(["--ver"]).code, run(["--v"]).stdout) == (0, run(["--version"]).stdout)
    assert (run(["--he", "--version"]).stdout, run(["--vers", "-h"]).stdout) == (run(["--help"]).stdout,) * 2
    assert (run(["--version", "--he"]).code, run(["--ver", "--hel"]).stdout) == (0, run(["--help"]).stdout)
    for argv in (["--x"], ["--helpx"], ["--"]):
        assert (run(argv).code, run(argv).stdout) == (64, b""), argv


def test_version_with_help_is_help_and_with_more_a_usage_error():
    """`--version --help` is `--help --version`: the usage (it said `unknown option
    --version`, 64); `--version` with anything else is 64, naming no word given."""
    usage = run(["--help"]).stdout
    for argv in (["--version", "--help"], ["--version", "-h"], ["--version", "x", "--help"], ["--help", "--version"]):
        assert (run(argv).code, run(argv).stdout, run(argv).stderr) == (0, usage, ""), argv
    for argv in (["--version", "--version"], ["--version", "--key=00ff"], ["--version", "seal"]):
        done = run(argv)
        assert (done.code, done.stdout) == (64, b""), argv
        assert done.stderr == ("encpipe: error: --version takes no arguments: 1 given\n"
                               "encpipe: hint: see encpipe --help\n"), argv


def test_python_dash_m_works(sealed):
    done = run_process(["open"], stdin=sealed, env=key_env())
    assert (done.returncode, done.stdout, done.stderr) == (0, DATA, b"")


def test_keyid_of_a_public_key_matches_its_identity(tmp_path):
    identity = tmp_path / "id"
    public = run(["keygen", "--x25519", "-o", str(identity)]).stdout.decode().strip()
    by_public = run(["keyid", "--recipient", public]).stdout
    by_identity = run(["keyid", "--identity", str(identity)]).stdout
    sealed = seal(b"x", {}, ["--recipient", public])
    assert by_public == by_identity
    assert json.loads(run(["inspect", "--json"], sealed).stdout)["slots"][0]["key_id"] == by_public.decode().strip()


# --- inspect says what it checked (acceptance 7) -------------------------------


def test_inspect_without_verify_says_not_verified(sealed):
    text = run(["inspect"], sealed).stdout.decode()
    assert "checked: header and length only: not verified" in text and "verified: False" not in text
    report = json.loads(run(["inspect", "--json"], sealed).stdout)
    assert report["verified"] is False and "not verified" in report["checked"]
    verified = run(["inspect", "--verify"], sealed, key_env()).stdout.decode()
    assert "checked: every chunk: verified" in verified and "not verified" not in verified


def _payload_start(sealed):
    """Where the payload starts as inspect without a key sees it: after the header,
    and shifted by the v2 trailer, which it sets aside from the end of what is there."""
    head = envelope.read_header(io.BytesIO(sealed))
    return head.size + head.trailer_len


def test_inspect_of_a_cut_at_a_chunk_boundary_is_not_verified(sealed):
    header = _payload_start(sealed)
    cut = sealed[: header + 2 * (CHUNK + 16)]  # two whole chunks: a plausible, shorter stream
    result = run(["inspect"], cut)
    assert result.code == 0 and "not verified" in result.stdout.decode()
    assert "plaintext bytes: 32768" in result.stdout.decode()
    assert run(["inspect", "--verify"], cut, key_env()).code == 65


def test_inspect_of_a_cut_inside_a_chunk_with_a_possible_length_is_not_verified(sealed):
    result = run(["inspect"], sealed[:-100])
    assert result.code == 0 and "not verified" in result.stdout.decode()


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_inspect_of_a_cut_inside_a_chunk_is_truncated_or_corrupt(sealed, json_flag):
    header = _payload_start(sealed)
    # Ten bytes into the third chunk: too short to hold even a tag, so no stream has this length.
    result = run(["inspect", *json_flag], sealed[: header + 2 * (CHUNK + 16) + 10])
    assert (result.code, result.stdout) == (65, b"")
    assert_one_line_error(result.stderr)
    assert "truncated or corrupt: a payload of" in result.stderr and "cannot be a complete stream" in result.stderr
    assert "not verified" in result.stderr


@pytest.mark.parametrize("command", [c for c in __import__("encpipe.usage").usage.COMMANDS if c != "help"])
@pytest.mark.parametrize("abbreviated", ["--he", "--hel"])
def test_an_abbreviated_help_is_help(command, abbreviated):
    """Long options may be abbreviated, and docopt took `--he` for --help, which the
    command then ignored: `seal --he` sealed, `keygen --he` printed a new key, and
    `pubkey --he` was internal error, 70. It is help, as --help is."""
    full = run([command, "--help"], env=key_env(KEY_A))
    done = run([command, abbreviated], env=key_env(KEY_A))
    assert (done.code, done.stdout, done.stderr) == (0, full.stdout, "")
    assert full.stdout.startswith(b"Usage:") or b"Usage:" in full.stdout


@pytest.mark.parametrize("option", ["--key-file", "--passphrase-file", "--identity", "--sign-key"])
def test_seal_o_over_its_own_secret_file_is_refused(tmp_path, option):
    """`seal --key-file k -o k` replaced the key with the file sealed to it: nothing
    could open it. The very file (by device and inode, a link to it too) is refused, 64."""
    keygen = {"--identity": ["keygen", "--x25519"], "--sign-key": ["keygen", "--sign"]}.get(option, ["keygen"])
    secret = tmp_path / "secret"
    if option == "--passphrase-file":
        secret_file(tmp_path, "secret", "a passphrase\n")
    else:
        assert run([*keygen, "-o", str(secret)]).code == 0
    before = secret.read_bytes()
    (tmp_path / "link").symlink_to(secret)
    extra = ["--key-file", str(secret_file(tmp_path, "k2", KEY_A + "\n"))] if option == "--sign-key" else []
    for out in (secret, tmp_path / "link"):
        done = run(["seal", option, str(secret), *extra, "-o", str(out)], b"data")
        assert (done.code, done.stdout) == (64, b""), done.stderr
        assert done.stderr.startswith(f"encpipe: error: --output is the file {option} names: sealing would replace it")
        assert secret.read_bytes() == before


@pytest.mark.parametrize("command, status", [("exit 3", 66), ("echo " + KEY_A, 0)])
def test_a_key_commands_pipe_is_closed(command, status):
    """The key command's output pipe was left to the garbage collector: under
    -W error (or -X dev) Python then printed an ignored ResourceWarning's traceback."""
    sealed = seal(b"data", key_env(KEY_A))
    done = subprocess.run([sys.executable, "-W", "error", "-X", "dev", "-m", "encpipe", "open", "--key-command",
                           command], input=sealed, capture_output=True, env={**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))})
    assert done.returncode == status, done.stderr
    assert done.stderr.count(b"\n") == (1 if status else 0) and b"Warning" not in done.stderr, done.stderr
