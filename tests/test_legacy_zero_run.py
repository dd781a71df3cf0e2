"""A file of the previous tool with 32 zero bytes in a row in its ciphertext is 65 as
soon as they are read (README "Errors", under "Files from the previous backup tool"),
wherever the run stands: across the boundary of two 1 MiB blocks too (before, a run cut
by a block's end was not seen, and such a file was read to its end), and into a short
last block. 31 zero bytes in a row are a ciphertext like any other: the file opens."""

import os

import pytest
from Crypto.Cipher import AES

from test_legacy import run, run_process

KEY = bytes(range(32))
MIB = 1 << 20
CASES = [  # (ciphertext length, start of the run, its length, refused)
    (MIB + 4096, MIB - 32, 32, True),  # within the first block, as before
    (MIB + 4096, MIB - 16, 32, True),  # across the boundary
    (MIB + 4096, MIB - 1, 32, True),  # one byte before it
    (MIB + 4096, MIB - 31, 32, True),  # all but one byte before it
    (MIB + 10, MIB - 22, 32, True),  # into the last, short block, to the end of the file
    (MIB + 4096, MIB - 16, 31, False),
    (MIB + 10, MIB - 21, 31, False),
    (2 * MIB + 8, 2 * MIB - 8, 16, False),  # zeros ending one block and the file's last bytes
]


def legacy_with_zeros(length, start, run_length):
    """A genuine file of the previous tool (its tag verifies under KEY) whose ciphertext
    holds `run_length` zero bytes from `start`: there the plaintext is the keystream."""
    iv = os.urandom(16)
    keystream = AES.new(KEY, AES.MODE_GCM, nonce=iv).encrypt(bytes(length))
    plaintext = bytearray(os.urandom(length))
    plaintext[start : start + run_length] = keystream[start : start + run_length]
    for edge in (start - 1, start + run_length):  # a ciphertext byte 0xFF either side: the run is as long as said
        if 0 <= edge < length:
            plaintext[edge] = keystream[edge] ^ 0xFF
    ciphertext, tag = AES.new(KEY, AES.MODE_GCM, nonce=iv).encrypt_and_digest(bytes(plaintext))
    assert ciphertext.count(bytes(run_length)) >= 1 and bytes(run_length + 1) not in ciphertext
    return os.urandom(32) + iv + tag + ciphertext, bytes(plaintext)


@pytest.mark.parametrize("length, start, run_length, refused", CASES)
def test_a_zero_run_refuses_wherever_it_stands(length, start, run_length, refused, tmp_path):
    data, plaintext = legacy_with_zeros(length, start, run_length)
    env = {"BACKUP_ENCRYPTION_KEY": KEY.hex()}
    status, out, err = run(["open", "--legacy"], data, env=env)
    if refused:
        assert (status, out) == (65, b"")
        assert err == (f"encpipe: error: not a file of the previous tool: 32 zero bytes in a row at byte "
                       f"{64 + start} (a hole?), which no ciphertext holds\n")
    else:
        assert (status, out, err) == (0, plaintext, "")
    path = tmp_path / "old.sql.enc"
    path.write_bytes(data)
    assert run_process(["open", "--legacy"], pipe_from=str(path), env=env)[:2] == ((65, b"") if refused else (0, plaintext))
