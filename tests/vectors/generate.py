#!/usr/bin/env python3
"""Write the encpipe test vectors (format v1, and v2 in v2_*.vec) into this
directory (or the one given).

Each vector is a small text header, a blank line, then the raw file bytes:

    expect: success | header failure | payload failure | no match | not signed
    key: <64 hex digits>          (any number of key:, passphrase:, identity: lines)
    passphrase: <text>
    identity: ENCPIPE-SECRET-KEY-1...
    signer: encpipesign1...       (the file must be signed by one of these)
    scrypt budget: <n>            (ENCPIPE_SCRYPT_BUDGET; else the default)
    plaintext sha256: <hex>       (success only)
    plaintext length: <n>         (success only)
    comment: <free text>

`expect` is what `encpipe open` with those keys (and signers, and budget) does:
success, exit 0 with the plaintext; header failure, 65 with nothing on standard
output (refused before any chunk is decrypted: the header, the slots, the
scrypt budget, a low-order x25519 point); payload failure, 65 after the header
verified (a chunk or the trailer: chunks that authenticated may have been
written first); no match, 77; not signed, 67 (tests/test_vectors.py).

All randomness comes from a DRBG seeded by the vector's name, so running this
again reproduces every byte; tests/test_vectors.py checks that.

The vectors are defined in vectors_v1.py (format v1), vectors_v2.py (format
v2: the trailer, forgeries) and vectors_v2_slots.py (which slot opens, points and
signatures at their edges), on the helpers and the registry in vectorkit.py;
this script writes them out.
"""

import hashlib
import importlib
import os
import sys

if __name__ == "__main__":  # run as a script: the checkout's encpipe, wherever it is run from
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from vectorkit import ESCROW, HERE, VECTORS  # noqa: E402

for _module in ("vectors_v1", "vectors_v2", "vectors_v2_slots"):
    importlib.import_module(_module)  # registers its vectors


def render(name):
    expect, comment, keys, passphrases, identities, signers, scrypt_budget, make = VECTORS[name]
    data, clear = make()
    lines = [f"expect: {expect}"]
    lines += [f"key: {k}" for k in keys]
    lines += [f"passphrase: {p}" for p in passphrases]
    lines += [f"identity: {ESCROW}" for _ in identities]
    lines += [f"signer: {s.verify_key}" for s in signers]
    if clear is not None:
        lines += [f"plaintext sha256: {hashlib.sha256(clear).hexdigest()}", f"plaintext length: {len(clear)}"]
    if scrypt_budget is not None:
        lines.append(f"scrypt budget: {scrypt_budget}")
    lines.append(f"comment: {comment}")
    return ("\n".join(lines) + "\n\n").encode() + data


def main(directory=HERE):
    for name in VECTORS:
        with open(os.path.join(directory, name + ".vec"), "wb") as out:
            out.write(render(name))


if __name__ == "__main__":
    main(*sys.argv[1:])
