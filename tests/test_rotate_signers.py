"""encpipe-rotate and signed files (issue 14, acceptance 7): --signer refuses files
no trusted signer signed, --sign-key signs the rotated files (once), the signatures
and the new raw-key authenticators check afterwards, and a warning appears exactly
when a signature was dropped."""

import json
import os
import sys

import pytest

from cliutil import ok, run, seal_v1
from spies import python_head
from test_rotate import CHUNK, World, lines, rotate, rotate_env

WARNING = b"encpipe-rotate: warning:"


class Signed(World):
    def __init__(self, tmp_path):
        super().__init__(tmp_path)
        self.sign1, self.sign2 = str(self.tmp / "keys" / "s1.sign"), str(self.tmp / "keys" / "s2.sign")
        self.pub1 = ok(run(["keygen", "--sign", "-o", self.sign1])).decode().strip()
        self.pub2 = ok(run(["keygen", "--sign", "-o", self.sign2])).decode().strip()
        self.id1, self.id2 = (ok(run(["keyid", "--signer", p])).decode().strip() for p in (self.pub1, self.pub2))

    def verified(self, name, *extra):
        """inspect --verify --json of a file with the new key."""
        return json.loads(ok(run(["inspect", "--verify", "--json", "--key-file", self.new, *extra],
                                 (self.dir / name).read_bytes())))


@pytest.fixture
def world(tmp_path):
    return Signed(tmp_path)


def assert_opens_signed(world, name, pub, signer_id):
    """Opens byte-exact with --signer; the new key's own authenticator checks."""
    sealed = (world.dir / name).read_bytes()
    assert ok(run(["open", "--key-file", world.new, "--signer", pub], sealed)) == world.plain[name]
    report = world.verified(name, "--signer", pub)
    new_id = world.ids(world.new)[0]
    assert report["authenticated_by"] == f"raw key {new_id}"
    assert report["sender_authenticated"] is True and report["trusted_signer"] == signer_id
    assert signer_id in report["signed_by"]


def test_signer_refuses_unsigned_and_foreign_signed_files_and_keeps_signatures(world):
    world.add("a-signed.enc", "--key-file", world.old_a, "--sign-key", world.sign1, size=3 * CHUNK + 5)
    world.add("b-unsigned.enc", "--key-file", world.old_a)
    world.add("c-other-signer.enc", "--key-file", world.old_b, "--sign-key", world.sign2)
    world.add("d-new-unsigned.enc", "--key-file", world.new)  # would be skipped: refused all the same
    done = rotate(["--signer", world.pub1, *world.args(escrow=False)])
    assert done.returncode == 1 and WARNING not in done.stderr, done.stderr
    got = lines(done)
    assert got["a-signed.enc"]["status"] == "rotated"
    assert got["a-signed.enc"]["signed_by"] == [world.id1]
    assert "dropped_signatures" not in got["a-signed.enc"]
    for name in ("b-unsigned.enc", "c-other-signer.enc", "d-new-unsigned.enc"):
        assert (got[name]["status"], got[name]["step"], got[name]["exit"]) == ("error", "signer", 67), name
        assert (world.dir / name).read_bytes() == world.originals[name], name
    assert world.id2 in got["c-other-signer.enc"]["error"]
    assert world.temps() == []
    assert_opens_signed(world, "a-signed.enc", world.pub1, world.id1)
    # the old key opens it no more; another signer is refused, with nothing on stdout
    sealed = (world.dir / "a-signed.enc").read_bytes()
    assert run(["open", "--key-file", world.old_a], sealed)[:2] == (77, b"")
    assert run(["open", "--key-file", world.new, "--signer", world.pub2], sealed)[:2] == (67, b"")


def test_encpipe_signer_in_the_environment_is_honoured(world):
    world.add("a-signed.enc", "--key-file", world.old_a, "--sign-key", world.sign1)
    world.add("b-unsigned.enc", "--key-file", world.old_a)
    done = rotate(world.args(escrow=False), env=rotate_env(ENCPIPE_SIGNER=world.pub1))
    assert done.returncode == 1, done.stderr
    got = lines(done)
    assert got["a-signed.enc"]["status"] == "rotated"
    assert (got["b-unsigned.enc"]["status"], got["b-unsigned.enc"]["step"]) == ("error", "signer")  # not even read
    assert (world.dir / "b-unsigned.enc").read_bytes() == world.originals["b-unsigned.enc"]


def test_sign_key_signs_every_rotated_file_once_and_a_rerun_changes_nothing(world):
    world.add("a-signed.enc", "--key-file", world.old_a, "--sign-key", world.sign1)
    world.add("b-unsigned.enc", "--key-file", world.old_b, "--recipient", world.escrow_pub, size=2 * CHUNK)
    world.add("c-new-unsigned.enc", "--key-file", world.new)  # under the new key, but not signed yet
    world.add("d-new-signed.enc", "--key-file", world.new, "--sign-key", world.sign2)
    dry = rotate(["--dry-run", "--sign-key", world.sign2, *world.args(escrow=False)])
    assert dry.returncode == 0, dry.stderr
    assert lines(dry)["c-new-unsigned.enc"]["sign"] == [world.id2]
    assert lines(dry)["d-new-signed.enc"]["status"] == "skipped"
    assert {n: (world.dir / n).read_bytes() for n in world.originals} == world.originals

    done = rotate(["--sign-key", world.sign2, *world.args(escrow=False)])
    assert done.returncode == 0 and WARNING not in done.stderr, done.stderr
    got = lines(done)
    assert got["a-signed.enc"]["signed_by"] == [world.id1, world.id2]
    assert got["b-unsigned.enc"]["signed_by"] == [world.id2]
    assert got["c-new-unsigned.enc"]["signed_by"] == [world.id2]
    assert got["d-new-signed.enc"]["status"] == "skipped"
    for name in ("a-signed.enc", "b-unsigned.enc", "c-new-unsigned.enc", "d-new-signed.enc"):
        assert_opens_signed(world, name, world.pub2, world.id2)
    assert_opens_signed(world, "a-signed.enc", world.pub1, world.id1)
    escrowed = (world.dir / "b-unsigned.enc").read_bytes()  # the escrow slot is kept, and the file signed
    assert ok(run(["open", "--identity", world.escrow_id, "--signer", world.pub2], escrowed)) == \
        world.plain["b-unsigned.enc"]
    headers = json.loads(ok(run(["inspect", "--json"], (world.dir / "a-signed.enc").read_bytes())))
    assert headers["signers"] == [world.id1, world.id2]  # not signed twice

    snapshot = {n: (world.dir / n).read_bytes() for n in world.originals}
    again = rotate(["--sign-key", world.sign2, "--signer", world.pub2, *world.args(escrow=False)])
    assert again.returncode == 0, again.stderr
    assert {r["status"] for r in lines(again).values()} == {"skipped"}
    assert {n: (world.dir / n).read_bytes() for n in world.originals} == snapshot


def test_a_version_1_file_cannot_be_signed_and_is_left_alone(world):
    path, original = world.dir / "v1.enc", seal_v1(b"old data", key=world.old_hex)
    path.write_bytes(original)
    done = rotate(["--sign-key", world.sign1, *world.args(escrow=False)])
    assert done.returncode == 1
    record = lines(done)["v1.enc"]
    assert (record["status"], record["step"], record["exit"]) == ("error", "rewrap", 67)
    assert path.read_bytes() == original
    assert world.temps() == []


RESEAL = """{head}
# As `encpipe rewrap`, but by re-sealing (open | seal): a new file, without the old signatures.
import subprocess, sys
encpipe = [{python!r}, "-m", "encpipe"]
args = sys.argv[1:]
if args[:1] != ["rewrap"]:
    sys.exit(subprocess.run(encpipe + args).returncode)
opens, seals = [], []
for word in args[1:]:  # rotate gives each as --option=VALUE
    name, _, value = word.partition("=")
    if name in ("--key-file", "--signer"):
        opens.append(word)
    elif name == "--add-key-file":
        seals.append("--key-file=" + value)
    elif name == "--sign-key":
        seals.append(word)
opener = subprocess.Popen(encpipe + ["open", *opens], stdout=subprocess.PIPE)
sealed = subprocess.run(encpipe + ["seal", *seals], stdin=opener.stdout).returncode
opener.stdout.close()
sys.exit(opener.wait() or sealed)
"""


def test_the_warning_appears_exactly_when_a_signature_was_dropped(world):
    """A rewrap that does not keep the signatures (here an ENCPIPE that re-seals
    instead) is caught: a warning and "dropped_signatures" name the lost signer;
    with that signer required, the file is refused and left as it was."""
    wrapper = world.tmp / "reseal"
    wrapper.write_text(RESEAL.format(head=python_head(), python=sys.executable))
    wrapper.chmod(0o700)
    world.add("a-signed.enc", "--key-file", world.old_a, "--sign-key", world.sign1)
    world.add("b-unsigned.enc", "--key-file", world.old_a)

    required = rotate(["--signer", world.pub1, *world.args(escrow=False)], env=rotate_env(ENCPIPE=str(wrapper)))
    assert required.returncode == 1 and WARNING not in required.stderr, required.stderr
    record = lines(required)["a-signed.enc"]
    assert (record["status"], record["step"], record["exit"]) == ("error", "verify", 67)
    assert {n: (world.dir / n).read_bytes() for n in world.originals} == world.originals

    done = rotate(["--sign-key", world.sign2, *world.args(escrow=False)], env=rotate_env(ENCPIPE=str(wrapper)))
    assert done.returncode == 0, done.stderr
    got = lines(done)
    assert got["a-signed.enc"]["dropped_signatures"] == [world.id1]
    assert got["a-signed.enc"]["signed_by"] == [world.id2]
    assert "dropped_signatures" not in got["b-unsigned.enc"]
    warnings = [line for line in done.stderr.decode().splitlines() if line.startswith("encpipe-rotate: warning:")]
    assert warnings == [f"encpipe-rotate: warning: {world.dir / 'a-signed.enc'}: the signature by {world.id1}"
                        " was dropped"], done.stderr
    assert_opens_signed(world, "a-signed.enc", world.pub2, world.id2)


@pytest.mark.parametrize("argv, code", [
    (["--signer", "encpipesign1abc"], 64),
    (["--signer", "encpipe1hv3r5k"], 64),
    (["--signer-file", "MISSING"], 66),
    (["--sign-key", "MISSING"], 66),
    (["--sign-key", "OLD"], 64),  # a raw key is not a signing key
])
def test_bad_signer_options_are_refused_before_touching_any_file(world, argv, code):
    world.add("a.enc", "--key-file", world.old_a)
    argv = [str(world.tmp / "missing") if a == "MISSING" else world.old_a if a == "OLD" else a for a in argv]
    done = rotate([*argv, *world.args(escrow=False)])
    assert (done.returncode, done.stdout) == (code, b""), done.stderr
    text = done.stderr.decode()
    assert text.startswith("encpipe-rotate: error: ") and "Traceback" not in text, text
    assert (world.dir / "a.enc").read_bytes() == world.originals["a.enc"]
    assert os.listdir(world.dir) == ["a.enc"]


def test_rewrap_keeps_every_signature_and_says_nothing(world):
    """What rotate relies on: `encpipe rewrap` of a signed file keeps its signatures (no
    warning: none is dropped), and the new key's authenticator checks."""
    world.add("a.enc", "--key-file", world.old_a, "--sign-key", world.sign1, "--sign-key", world.sign2)
    done = run(["rewrap", "--key-file", world.old_a, "--remove", world.ids(world.old_a)[0], "--add-key-file",
                world.new], world.originals["a.enc"])
    assert (done.code, done.stderr) == (0, "")
    (world.dir / "a.enc").write_bytes(done.stdout)
    for pub, key_id in ((world.pub1, world.id1), (world.pub2, world.id2)):
        assert_opens_signed(world, "a.enc", pub, key_id)
