"""Behaviours of the cryptographic leaf modules (spool.py, legacy.py, aead.py, ...)
that a hand-made mutation review found no test pinning: each test here failed on a
mutant of one product line and passes on the product as it is."""

import io
import json
import os

import pytest

import independent_decoder
from cliutil import KEY_A, ok, run, secret_file

from encpipe import aead, cli, gcmlibs, keyargs, legacy, signing, textform, x25519
from encpipe.errors import IOFailure, UsageError
from encpipe.format import TAG_LEN
from encpipe.spool import Tee, private_spool

DUMP = b"-- PostgreSQL database dump\n" + b"-- filler\n" * 5_000
KEY = legacy.key_from_setting("k")


def _where(spool):
    return os.readlink(f"/proc/self/fd/{spool.fileno()}")


def test_tmpdir_comes_before_temp_and_tmp_as_tempfile_has_it(tmp_path, monkeypatch):
    """Pins spool._unnamed's order of the variables: TMPDIR, then TEMP, then TMP."""
    for name in ("TMPDIR", "TEMP", "TMP"):
        (tmp_path / name).mkdir()
        monkeypatch.setenv(name, str(tmp_path / name))
    with private_spool() as spool:
        assert _where(spool).startswith(f"{tmp_path}/TMPDIR/#")
    monkeypatch.delenv("TMPDIR")
    with private_spool() as spool:
        assert _where(spool).startswith(f"{tmp_path}/TEMP/#")


def test_a_full_spool_is_an_io_failure_not_a_bare_os_error():
    """Pins Tee's mapping of a failed spool write (a full TMPDIR) to IOFailure (74)."""
    with open("/dev/full", "wb", buffering=0) as full:
        with pytest.raises(IOFailure, match="cannot spool the input"):
            Tee(io.BytesIO(b"ciphertext"), full).readinto(bytearray(16))


def test_a_spool_whose_closing_fails_keeps_the_error_of_the_run(tmp_path):
    """Pins private_spool's close: its flush failing (a full TMPDIR) replaces no error of the run."""
    class RunFailed(Exception):
        pass

    with pytest.raises(RunFailed):
        with private_spool(str(tmp_path)) as spool, open("/dev/full", "wb") as full:
            spool.write(b"buffered, not yet written")
            os.dup2(full.fileno(), spool.fileno())  # the flush at close: ENOSPC
            raise RunFailed


class _Growing(io.FileIO):
    """A legacy file that a writer extends once its payload starts to be read."""

    grown = False

    def readinto(self, view):
        if not self.grown and self.tell() == legacy.HEADER_LEN:
            self.grown = True
            with open(self.name, "ab") as writer:
                writer.write(b"\x01" * 100)
        return super().readinto(view)


def test_a_legacy_file_extended_while_it_is_read_opens_as_it_was_found(tmp_path):
    """Pins _AsFound's bound: bytes appended after the open are not read (the tag covers what was there)."""
    path = tmp_path / "old.sql.enc"
    with open(path, "wb") as f:
        legacy.seal_legacy(io.BytesIO(DUMP), f, KEY.key)
    out = io.BytesIO()
    with _Growing(str(path), "rb") as src:
        info = legacy.open_legacy(src, out, [KEY], tmpdir=str(tmp_path))
    assert out.getvalue() == DUMP and info.plaintext_bytes == len(DUMP)
    assert os.path.getsize(path) == legacy.HEADER_LEN + len(DUMP) + 100


@pytest.mark.parametrize("value", [" pycryptodome", "pycryptodome\n", "\tcryptography "])
def test_encpipe_cipher_is_taken_without_the_white_space_around_it(value):
    """Pins aead.name()'s strip(): ENCPIPE_CIPHER=' pycryptodome' forces pycryptodome, not a usage error."""
    assert aead.name({aead.ENV_CIPHER: value}) == value.strip()


def test_prepare_imports_what_a_chunk_by_pieces_needs_in_the_callers_thread(monkeypatch):
    """Pins Cryptography.prepare: the Cipher API is imported before the workers start, only where pieces need it."""
    monkeypatch.setenv(aead.ENV_CIPHER, aead.CRYPTOGRAPHY)
    aead.library()
    cls = gcmlibs.Cryptography
    monkeypatch.setattr(cls, "in_place", False)
    monkeypatch.setattr(cls, "_Cipher", None)
    cipher = aead.gcm(bytes(32))
    cipher.prepare(gcmlibs.SPARE_MAX + TAG_LEN)  # whole, into a spare: nothing to import
    assert cls._Cipher is None
    cipher.prepare(gcmlibs.SPARE_MAX + TAG_LEN + 1)  # by pieces
    assert cls._Cipher is not None


def test_a_secret_form_is_known_by_its_prefix_in_any_case():
    """Pins textform.secret_kind's case folding: a lower-cased identity or signing key is still said to be one."""
    identity, signing_key = str(x25519.X25519Identity.generate()), str(signing.SigningKey.generate())
    for text in (identity, identity.lower(), signing_key, signing_key.lower(), signing_key.title()):
        assert textform.secret_kind(text) == ("an X25519 identity" if text.upper().startswith("ENCPIPE-SECRET")
                                              else "a signing key")
    with pytest.raises(UsageError, match="an X25519 identity"):
        textform.refuse_key_in_place(identity.lower(), "--key-command")


def test_a_raw_key_is_exactly_64_hex_digits():
    """Pins textform's raw-key rule: 63 or 65 hex digits are not said to be a raw key."""
    assert textform.secret_kind("ab" * 32) == textform.RAW_KEY_KIND
    assert textform.secret_kind("ab" * 32 + "c") is None and textform.secret_kind("ab" * 31 + "c") is None


def test_a_bad_verify_key_is_named_by_its_line_in_a_file_not_in_the_variable(tmp_path):
    """Pins parse_verify_keys' `numbered`: a signer file's bad key is named by line, ENCPIPE_SIGNER's not."""
    good = str(signing.SigningKey.generate().verify_key)
    bad = good[:-1] + ("a" if good[-1] != "a" else "b")
    path = secret_file(tmp_path, "signers", f"# signers\n{good}\n\n{bad}\n")
    with pytest.raises(UsageError) as by_file:
        keyargs.load_signers([], [path], {})
    assert str(by_file.value).startswith(f"{path}, line 4: malformed verify key")
    with pytest.raises(UsageError) as by_variable:
        keyargs.load_signers([], [], {"ENCPIPE_SIGNER": f"{good} {bad}"})
    assert str(by_variable.value).startswith("ENCPIPE_SIGNER: malformed verify key")


def test_a_signers_key_id_is_the_readmes_hkdf_of_its_verify_key(tmp_path):
    """Pins signing.VerifyKey.key_id: inspect's signers are HKDF(verify key, "", "encpipe v2 ed25519 key id", 8)."""
    verify = ok(run(["keygen", "--sign", "-o", str(tmp_path / "s.key")])).decode().strip()
    sealed = ok(run(["seal", "--key-file", secret_file(tmp_path, "k", KEY_A), "--sign-key", str(tmp_path / "s.key")],
                    b"data"))
    expected = independent_decoder.hkdf(independent_decoder.verify_key(verify), b"", b"encpipe v2 ed25519 key id", 8)
    assert json.loads(ok(run(["inspect", "--json"], sealed)))["signers"] == [expected.hex()]


@pytest.mark.parametrize("index, said", [(1, "1st"), (2, "2nd"), (3, "3rd"), (4, "4th"), (11, "11th"), (12, "12th"),
                                         (13, "13th"), (21, "21st"), (22, "22nd"), (111, "111th"), (112, "112th")])
def test_the_nth_value_of_an_option_is_said_in_english(index, said):
    """Pins textform.nth's suffixes, 11th to 13th among them (not 11st, 12nd, 13rd)."""
    assert textform.nth("--recipient", index, 200) == f"--recipient ({said} of 200)"


@pytest.mark.parametrize("run_length", [31, 32])
def test_a_legacy_file_with_32_zero_bytes_in_a_row_is_65_and_names_their_offset(run_length):
    """Pins legacy's zero-run rule (README: 32 zero bytes in a row exit 65) and the file offset it names."""
    data = bytes(64) + bytes(range(1, 101)) + bytes(run_length) + b"\x01" * 100  # the header (zeros) is not looked at
    out, err = io.BytesIO(), io.StringIO()
    status = cli.main(["open", "--legacy"], stdin=io.BytesIO(data), stdout=out, stderr=err,
                      env={"BACKUP_ENCRYPTION_KEY": "k"})
    assert out.getvalue() == b""
    if run_length < 32:
        assert status == 77, err.getvalue()
    else:
        assert status == 65 and "32 zero bytes in a row at byte 164 " in err.getvalue(), err.getvalue()


def test_a_missing_path_of_32_hex_digits_is_not_shown(tmp_path, monkeypatch):
    """Pins textform's secret look: 32 hex digits (a 128-bit key?) naming no file are not shown; 31 are."""
    monkeypatch.chdir(tmp_path)
    assert textform.shown_name("0123456789abcdef" * 2).startswith("FILE (its name not shown:")
    assert textform.shown_name("0123456789abcde" + "0123456789abcdef") == "0123456789abcde0123456789abcdef"
