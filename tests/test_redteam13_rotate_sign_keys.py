"""encpipe-rotate --sign-key FILE whose FILE holds more than one signing key: every
key in every --sign-key file must have signed each file rotate leaves under the new
keys. Before, the key ids of all the files were paired with the files one to one
(zip), so a file holding two keys made the later files' keys be judged by the
wrong ids: a file that lacked a signature was `skipped` and rotate exited 0."""

import json
import os

import pytest

from cliutil import ok, run
from test_rotate import World, lines, rotate


class TwoKeyFile(World):
    def __init__(self, tmp_path):
        super().__init__(tmp_path)
        keys = self.tmp / "keys"
        pubs, self.sign_ids = [], []
        for n in (1, 2, 3):
            path = keys / f"s{n}.sign"
            pubs.append(ok(run(["keygen", "--sign", "-o", str(path)])).decode().strip())
            self.sign_ids.append(ok(run(["keyid", "--signer", pubs[-1]])).decode().strip())
        # s12.sign holds s1 and s2; s3.sign holds s3
        self.s12 = keys / "s12.sign"
        self.s12.write_bytes((keys / "s1.sign").read_bytes() + (keys / "s2.sign").read_bytes())
        self.s12.chmod(0o600)
        self.s1, self.s2, self.s3 = (str(keys / f"s{n}.sign") for n in (1, 2, 3))

    def signed_by(self, name):
        report = json.loads(ok(run(["inspect", "--verify", "--json", "--key-file", self.new],
                                   (self.dir / name).read_bytes())))
        return sorted(set(report.get("signed_by") or []))


@pytest.fixture
def world(tmp_path):
    return TwoKeyFile(tmp_path)


def test_a_file_lacking_the_signature_of_a_later_sign_key_file_is_not_skipped(world):
    # under the new key already, signed by s1 and s2 but not s3
    world.add("a.enc", "--key-file", world.new, "--sign-key", world.s1, "--sign-key", world.s2)
    done = rotate(["--old-key-file", world.old, "--new-key-file", world.new, "--sign-key", str(world.s12),
                   "--sign-key", world.s3, str(world.dir)])
    got = lines(done)
    assert done.returncode == 0, done.stderr
    assert got["a.enc"]["status"] == "rotated", got
    assert world.signed_by("a.enc") == sorted(world.sign_ids)


def test_a_file_lacking_the_second_key_of_one_sign_key_file_is_not_skipped(world):
    """The file is given to rewrap whole: s1's signature is then there twice (README)."""
    world.add("a.enc", "--key-file", world.new, "--sign-key", world.s1)
    done = rotate(["--old-key-file", world.old, "--new-key-file", world.new, "--sign-key", str(world.s12),
                   str(world.dir)])
    got = lines(done)
    assert done.returncode == 0, done.stderr
    assert got["a.enc"]["status"] == "rotated", got
    assert world.signed_by("a.enc") == sorted(world.sign_ids[:2])


def test_dry_run_names_every_key_it_would_sign_with(world):
    world.add("a.enc", "--key-file", world.old_a)
    done = rotate(["--dry-run", "--old-key-file", world.old, "--new-key-file", world.new, "--sign-key",
                   str(world.s12), "--sign-key", world.s3, str(world.dir)])
    got = lines(done)
    assert done.returncode == 0, done.stderr
    assert sorted(got["a.enc"]["sign"]) == sorted(world.sign_ids)


@pytest.mark.parametrize("twice", ["same path", "another file of the same keys"])
def test_a_key_given_twice_signs_once(world, twice):
    """Before: `--sign-key s1 --sign-key s1` gave each rotated file s1's signature twice."""
    again = world.s1
    if twice != "same path":
        again = str(world.tmp / "keys" / "s1-copy.sign")
        with open(world.s1, "rb") as src, open(again, "wb") as dst:
            dst.write(src.read())
        os.chmod(again, 0o600)
    world.add("a.enc", "--key-file", world.old_a)
    done = rotate(["--old-key-file", world.old, "--new-key-file", world.new, "--sign-key", world.s1,
                   "--sign-key", again, str(world.dir)])
    assert done.returncode == 0, done.stderr
    assert lines(done)["a.enc"]["signed_by"] == [world.sign_ids[0]]
