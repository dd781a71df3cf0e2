"""How keys are read from their texts, and what the previous tool's files are told
apart by, where a key file may be and which descriptor a secret is lent on
(legacy.py, textform.py, keyplace.py, fdsecrets.py, envelope.py): each case pins
one decision that a hand-made mutant of it passed every earlier test with (a
mutation review). README's "Files from the previous backup tool", "Edge rules",
"Where keys come from" and "Shared directories" are what each holds the code to;
each is pure calls, in-process runs or one subprocess."""

import io
import subprocess
import sys

import pytest

from cliutil import ok, run, secret_file
from encpipe import cli, envelope, fdsecrets, keyargs, keyplace, legacy, signing, textform, x25519
from encpipe import format as fmt
from encpipe.errors import InvalidStream, UnsafeDirectory, UsageError
from encpipe.format import MAGIC
from fuzz.fuzz_encpipe import Pipe
from test_legacy_spool import DUMP, KEY, sealed


def test_an_encpipe_file_shorter_than_the_old_header_is_said_to_be_one():
    """Pins legacy._read_header's order: an input that starts with the encpipe magic is
    said to be an encpipe file, "even one shorter than 64 bytes" (README), not a legacy
    file too short for its header."""
    sealed = ok(run(["seal"], b"", env={"ENCPIPE_KEY": "ab" * 32}))
    for cut in (len(MAGIC), 40, 63):
        out, err = io.BytesIO(), io.StringIO()
        status = cli.main(["open", "--legacy"], stdin=io.BytesIO(sealed[:cut]), stdout=out, stderr=err,
                          env={"BACKUP_ENCRYPTION_KEY": "k"})
        assert (status, out.getvalue(), err.getvalue()) == (
            65, b"", "encpipe: error: this is an encpipe file, not one from the previous tool\n"
                     "encpipe: hint: open it without --legacy\n")


def test_a_cr_lf_ends_one_line_so_an_error_names_the_line_an_editor_shows(tmp_path):
    """Pins textform._LINE_END's CR LF as one line end (README: a line ends at LF, CR LF
    or CR): the 4th line of a CR LF file is line 4 of its error, not line 7."""
    assert list(textform.lines("a\r\nb\r\n# c\r\nd\re\nf")) == [(1, "a"), (2, "b"), (4, "d"), (5, "e"), (6, "f")]
    good = str(signing.SigningKey.generate().verify_key)
    path = secret_file(tmp_path, "signers", f"# signers\r\n{good}\r\n\r\n{good[:-1]}\r\n")
    with pytest.raises(UsageError) as refused:
        keyargs.load_signers([], [path], {})
    assert str(refused.value).startswith(f"{path}, line 4: malformed verify key"), refused.value


def test_a_missing_key_file_with_a_dot_in_its_name_is_named_as_a_path(tmp_path, monkeypatch):
    """Pins textform.may_be_secret's bare word (README: "a bare word without / or ."):
    a missing `backup.key` is a mistyped path, 66 naming it; `backupkey` may be a
    passphrase typed in its place, 64 and not shown."""
    monkeypatch.chdir(tmp_path)
    assert run(["seal", "--key-file", "backup.key"], b"") == (
        66, b"", "encpipe: error: cannot read backup.key: No such file or directory\n")
    refused = run(["seal", "--key-file", "backupkey"], b"")
    assert (refused.code, refused.stdout) == (64, b"") and "backupkey" not in refused.stderr, refused.stderr


def test_standard_input_as_a_key_file_is_not_judged_as_a_file_of_the_working_directory(tmp_path, monkeypatch):
    """Pins keyplace.refuse_if_replaceable's STDIN_PATHS: `--key-file -` is the caller's
    standard input, never refused (README "Key files"), even run from a directory
    others can write, where a file named `-` would be refused (73)."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.chdir(shared)
    keyplace.refuse_replaceable({"--key-file": ["-", "/dev/stdin"], "--passphrase-file": ["-"]})
    with pytest.raises(UnsafeDirectory):
        keyplace.refuse_replaceable({"--key-file": ["./-"]})


_LEND_3 = """
import os, sys
from encpipe.fdsecrets import FdSecrets
os.dup2(os.open(sys.argv[1], os.O_RDONLY), 3)
s = FdSecrets({"key_file": ["/dev/fd/3"]}, ("key_file",))
seen = {}
def start(argv, pass_fds, env):
    with open("/dev/fd/3", "rb") as f:
        seen["lent"], seen["read"] = pass_fds, f.read()
s.spawn(["encpipe", "open", "--key-file=/dev/fd/3", "FILE"], start=start, env={})
with open("/dev/fd/3", "rb") as f:
    print(sorted(s.secrets), seen["lent"], seen["read"].decode().strip(), repr(f.read()))
"""


def test_a_secret_file_at_descriptor_3_is_read_once_and_lent(tmp_path):
    """Pins fdsecrets.FdSecrets' "N from 3" (README: `--key-file /dev/fd/3 3<FILE`, the
    usual spelling; the suite's descriptors were all higher): 3 is read at the start,
    lent to the encpipe that names it, and /dev/null again afterwards."""
    key = secret_file(tmp_path, "key", "ab" * 32 + "\n")
    done = subprocess.run([sys.executable, "-c", _LEND_3, key], capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL)
    assert (done.returncode, done.stdout) == (0, f"[3] [3] {'ab' * 32} b''\n"), done.stderr


@pytest.mark.parametrize("option", ["--key-file", "--identity", "--passphrase-file", "--recipient-file", "--sign-key",
                                    "--signer-file", "--add-key-file", "--add-passphrase-file"])
def test_every_key_file_option_readme_lists_is_judged_by_its_place(tmp_path, option):
    """Pins keyargs.SECRET_FILES, the options keyplace judges (README "Shared directories":
    rewrap's --add-key-file and --add-passphrase-file among them): a file in a directory
    others can write is 73 for each, and nothing with --allow-shared-dir."""
    shared = tmp_path / "shared"
    shared.mkdir()
    path = secret_file(shared, "secret", "ab" * 32 + "\n")
    shared.chmod(0o777)
    with pytest.raises(UnsafeDirectory, match=f"^{option} {path}: its directory {shared} can be written by"):
        keyplace.refuse_replaceable({option: [path]})
    keyplace.refuse_replaceable({option: [path]}, allow_shared=True)


def test_a_key_with_white_space_around_it_is_still_known_for_a_key():
    """Pins textform.secret_kind's strip: a raw key or identity pasted with a space or a
    line end around it (`--key-command " KEY"`, a copy from a terminal) is still refused
    as a key, 64, not run as a command that sh would echo (`KEY: not found`)."""
    key, identity = "ab" * 32, str(x25519.X25519Identity.generate())
    assert textform.secret_kind(f" \t{key}\r\n") == textform.RAW_KEY_KIND
    assert textform.secret_kind(f"\n{identity} ") == "an X25519 identity"
    result = run(["seal", "--key-command", f" {key}\n"], b"data")
    assert (result.code, result.stdout) == (64, b""), result.stderr
    assert result.stderr.startswith("encpipe: error: key command: a raw key (a secret, not shown), not a command\n")
    assert key not in result.stderr


@pytest.mark.parametrize("argv, word", [(["open", "-p", "hunter2"], "hunter2"),
                                        (["pubkey", "my cat is 3.5 years old"], "my cat is 3.5 years old")])
def test_a_passphrase_typed_where_a_file_belongs_is_not_shown(tmp_path, monkeypatch, argv, word):
    """Pins textform.shown_name's two reasons to hide a name that names no file: -p given
    too (it takes no value, so the word after it is most likely the passphrase) and
    white space inside (a passphrase's look): README "the value (not shown)"."""
    monkeypatch.chdir(tmp_path)
    result = run(argv, b"")
    assert (result.code, result.stdout) == (66, b""), result.stderr
    assert word not in result.stderr and "(its name not shown: it names no file and may be a key or passphrase)" \
        in result.stderr, result.stderr


def test_a_header_of_exactly_16384_bytes_is_written_and_one_byte_more_is_refused():
    """Pins envelope.build_header's limit (README: header_len "at most 16384"; a writer
    refuses a header that "would pass 16384 bytes"): 16384 is written, 16385 is 64."""
    def header(body_len):
        return envelope.build_header(bytes(32), [fmt.SlotRecord(200, bytes(body_len))], 14, bytes(32))

    fixed = header(0).size
    assert header(fmt.MAX_HEADER_LEN - fixed).size == fmt.MAX_HEADER_LEN == 16384
    with pytest.raises(UsageError, match="at most 16384 bytes; these slots need 16385"):
        header(fmt.MAX_HEADER_LEN - fixed + 1)


@pytest.mark.parametrize("argv, reads_none", [(["encpipe", "open", "inspect"], False),
                                              (["encpipe", "open", "keygen"], False),
                                              (["encpipe", "inspect", "open"], True),
                                              (["encpipe", "keyid", "--signer=S", "open"], True)])
def test_the_command_of_a_child_is_its_first_word_that_names_one(argv, reads_none):
    """Pins fdsecrets.reads_no_key's first command word: `open` of a file named
    `inspect` or `keygen` reads a key (and keeps ENCPIPE_KEY), `inspect` of a file
    named `open` does not."""
    assert fdsecrets.reads_no_key(argv) is reads_none


def test_a_spool_cut_at_a_block_boundary_between_the_passes_is_said_to_have_changed(monkeypatch):
    """Pins legacy._decrypt's witnesses.end(): a spool cut at a block's end between the
    two passes (every block left matches its witness) is "the input changed between
    the two passes" (README), after the blocks before the cut, not the tag's failure."""
    real, kept = legacy.rewind, 2 * legacy.BUFFER_SIZE
    assert len(DUMP) > kept
    monkeypatch.setattr(legacy, "rewind", lambda spool: (real(spool), spool.truncate(kept), real(spool)))
    out = io.BytesIO()
    with pytest.raises(InvalidStream, match="^the input changed between the two passes"):
        legacy.open_legacy(Pipe(sealed()), out, [KEY])
    assert out.getvalue() == DUMP[:kept]


def test_the_no_key_hint_names_the_prompt_option():
    """Pins keyargs.no_key_hint's -p (docopt names it --passphrase): a command without a
    key (78) names every key option it takes, the prompt among them."""
    sealed_file = ok(run(["seal"], b"x", env={"ENCPIPE_KEY": "ab" * 32}))
    assert run(["open"], sealed_file, env={}) == (78, b"", "encpipe: error: no key configured\nencpipe: hint: set "
                                                  "ENCPIPE_KEY or ENCPIPE_PASSPHRASE, or use --key-file, --identity, "
                                                  "--passphrase-file, --key-command or -p\n")
