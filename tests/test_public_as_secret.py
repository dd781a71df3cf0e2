"""A public key given where a secret key belongs (a newcomer's `open --identity
id.pub`, `seal --sign-key sign.pub`, `pubkey id.pub`) is named for what it is,
64, with where the secret key is: before, "a key must be 64 hex characters, not
66", as if it were a mistyped raw key. The public key may be shown: it is public."""

import pytest

from cliutil import ok, run


@pytest.fixture
def keys(tmp_path):
    made = {}
    for kind, flag in (("id", "--x25519"), ("sign", "--sign")):
        public = ok(run(["keygen", flag, "-o", str(tmp_path / f"{kind}.key")])).decode().strip()
        (tmp_path / f"{kind}.pub").write_text(public + "\n")
        (tmp_path / f"{kind}.pub").chmod(0o600)
        made[kind] = public
    return tmp_path, made


PUBLIC = ("{file}, line 1: a public key ({public:.12}...), not a secret key\n",
          "a public key only seals (--recipient, --recipient-file); the identity is in the file "
          "`encpipe keygen --x25519 -o FILE` wrote\n")
VERIFY = ("{file}, line 1: a verify key ({public:.16}...), not a signing key\n",
          "a verify key only checks signatures (--signer, --signer-file); the signing key is in the file "
          "`encpipe keygen --sign -o FILE` wrote\n")


@pytest.mark.parametrize("kind, argv", [
    ("id", ["open", "--identity", "{file}"]),
    ("id", ["open", "--key-file", "{file}"]),
    ("id", ["inspect", "--verify", "--identity", "{file}", "{sealed}"]),
    ("id", ["pubkey", "{file}"]),
    ("sign", ["seal", "--sign-key", "{file}", "--recipient", "{recipient}"]),
    ("sign", ["pubkey", "{file}"]),
    ("sign", ["keyid", "--sign-key", "{file}"]),
])
def test_a_public_key_where_a_secret_key_belongs_is_named(keys, kind, argv):
    folder, public = keys
    file = str(folder / f"{kind}.pub")
    sealed = folder / "x.enc"
    sealed.write_bytes(ok(run(["seal", "--recipient", public["id"]], b"data")))
    argv = [a.format(file=file, sealed=sealed, recipient=public["id"]) for a in argv]
    done = run(argv, sealed.read_bytes() if argv[0] == "open" else b"")
    line, hint = PUBLIC if kind == "id" else VERIFY
    assert (done.code, done.stdout) == (64, b"")
    assert done.stderr == "encpipe: error: " + line.format(file=file, public=public[kind]) + "encpipe: hint: " + hint
