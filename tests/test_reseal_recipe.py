"""README's re-encryption after a leaked key ("What rewrap cannot do"), run as printed
over a backup directory.

The recipe was `encpipe open --key-file old.key "$f" | encpipe seal --key-file
new.key`: each backup came out sealed to the new key alone, its escrow slot and its
signature gone (the escrow drill then opened nothing, and a prune or restore with
--signer refused every re-sealed backup), and a file the leaked key's holder made
(unsigned, opened by the leaked raw key, as any of theirs) came out re-sealed under
the new key as if it were the operator's. Now the recipe opens only what a trusted
signer signed and seals with the escrow recipient and the signing key again.

A re-sealed file was mktemp's, mode 0600 and the re-sealer's group: a backup kept
0640 for a group of readers (an off-site sync's) was no longer theirs to read. Now
it keeps the original's mode and group."""

import os
import re
import subprocess
from pathlib import Path

from cliutil import ok, run, write_secret

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
NAMES = ("shop_20250101T020000Z.sql.zst.enc", "shop_20250101T020000Z.globals.sql.enc",
         "shop_20250102T020000Z.dump.enc")
GROUP = 4 if os.geteuid() == 0 else os.getgid()  # root: a group not its own (adm)


def recipe():
    found = re.search(r"and then destroy the old copies:\n\n((?:    .*\n)+)\n", README)
    assert found, "the re-encryption recipe is not where it was"
    return "".join(line[4:] + "\n" for line in found[1].splitlines())


def test_the_readme_recipe_keeps_escrow_and_signature_and_refuses_a_forgery(tmp_path, tools):
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    old = write_secret(keys / "old.key", os.urandom(32).hex() + "\n")
    new = write_secret(keys / "new.key", os.urandom(32).hex() + "\n")
    escrow = str(keys / "escrow.id")
    (keys / "escrow.pub").write_text(ok(run(["keygen", "--x25519", "-o", escrow])).decode())
    verify = ok(run(["keygen", "--sign", "-o", str(keys / "backup.sign")])).decode()
    (keys / "signers").write_text(verify)
    directory = tmp_path / "backups"
    directory.mkdir(mode=0o700)
    plain = {}
    for name in NAMES:
        plain[name] = os.urandom(5000)
        sealed = ok(run(["seal", "--key-file", old, "--recipient-file", str(keys / "escrow.pub"),
                         "--sign-key", str(keys / "backup.sign")], plain[name]))
        (directory / name).write_bytes(sealed)
        os.chmod(directory / name, 0o640)  # for a group of readers
        os.chown(directory / name, -1, GROUP)
    forged = directory / "shop_20250103T020000Z.sql.enc"  # the leaked key's holder's
    forged.write_bytes(ok(run(["seal", "--key-file", old], b"DROP TABLE accounts;\n")))
    before = forged.read_bytes()

    env = {**os.environ, "PATH": f"{tools}{os.pathsep}{os.environ['PATH']}", "dir": str(directory)}
    script = "for f in \"$dir\"/*.enc; do\n" + recipe() + "done\n"
    subprocess.run(["bash", "-c", script], cwd=keys, env=env, capture_output=True, timeout=300)

    for name in NAMES:
        sealed = (directory / name).read_bytes()
        assert run(["open", "--key-file", old], sealed)[:2] == (77, b"")
        assert ok(run(["open", "--key-file", new, "--signer", verify.strip()], sealed)) == plain[name]
        assert ok(run(["open", "--identity", escrow, "--signer", verify.strip()], sealed)) == plain[name]
        kept = os.stat(directory / name)
        assert (kept.st_mode & 0o7777, kept.st_gid) == (0o640, GROUP)
    assert forged.read_bytes() == before  # not re-sealed under the new key
    assert not [n for n in os.listdir(directory) if n.startswith(".")]
