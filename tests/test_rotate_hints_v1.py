"""encpipe-rotate passes on the hint of an encpipe run that refused a key (its
error's, which it dropped), with the option rotate was given named in it; a
value of --escrow-recipient is a value, never an option of the encpipe it is
given to; and a version 1 file met on the way gets a warning: it is not
sender-authenticated and cannot be signed (README, "Rotating a directory").
Also: a JSON line's file name that is not UTF-8."""

import json

from cliutil import ok, run, seal_v1
from test_rotate import World, lines, rotate, rotate_env


def test_the_hint_of_a_refused_new_key_file_is_passed_on(tmp_path):
    """Before: the error line alone; encpipe keyid's hint was dropped."""
    world = World(tmp_path)
    sign = str(tmp_path / "keys" / "s.sign")
    ok(run(["keygen", "--sign", "-o", sign]))
    done = rotate(["--old-key-file", world.old, "--new-key-file", sign, str(world.dir)])
    assert (done.returncode, done.stdout, done.stderr.decode()) == (
        64, b"", "encpipe-rotate: error: a signing key is not an encryption key\n"
                 "encpipe-rotate: hint: give it with --sign-key\n")


def test_the_hint_for_an_escrow_recipient_names_escrow_recipient(tmp_path):
    """An encpipe that refuses the public key with a hint (a stand-in: ENCPIPE, for
    `keyid --recipient` only): the error line and the hint both say
    --escrow-recipient, the option rotate takes, not encpipe's --recipient."""
    world = World(tmp_path)
    fake = tmp_path / "encpipe"
    fake.write_text('#!/bin/sh\nif [ "$1" = keyid ] && [ "${2%%=*}" = --recipient ]; then\n'
                    '  echo "encpipe: error: --recipient: refused" >&2\n'
                    '  echo "encpipe: hint: give --recipient the key that encpipe pubkey prints" >&2\n  exit 64\nfi\n'
                    f'exec {rotate_env()["ENCPIPE"]} "$@"\n')
    fake.chmod(0o755)
    done = rotate(world.args(), env=rotate_env(ENCPIPE=str(fake)))
    assert (done.returncode, done.stdout, done.stderr.decode()) == (
        64, b"", "encpipe-rotate: error: --escrow-recipient: refused\n"
                 "encpipe-rotate: hint: give --escrow-recipient the key that encpipe pubkey prints\n")


def test_an_escrow_recipient_that_looks_like_an_option_is_a_bad_public_key(tmp_path):
    """Before: `keyid --recipient -h` printed keyid's help, rotate took its words
    for the escrow recipient's key id, and a --dry-run exited 0."""
    world = World(tmp_path)
    world.mixed()
    done = rotate(["--old-key-file", world.old, "--new-key-file", world.new, "--escrow-recipient=-h", "--dry-run",
                   str(world.dir)])
    assert (done.returncode, done.stdout, done.stderr.decode()) == (
        64, b"", "encpipe-rotate: error: --escrow-recipient: not an encpipe public key "
                 "(it must start with encpipe1)\n")


def test_a_version_1_file_is_rotated_with_a_warning(tmp_path):
    """Before: rotated, or skipped, without a word; the README said so."""
    world = World(tmp_path)
    (world.dir / "v1.enc").write_bytes(seal_v1(b"old data", key=world.old_hex))
    world.add("v2.enc", "--key-file", world.old_a)
    warning = (f"encpipe-rotate: warning: {world.dir}/v1.enc: a version 1 file: its maker is not authenticated "
               "(any holder of one of its keys could have made it) and it cannot be signed; re-seal it (encpipe "
               "open | encpipe seal) to make it version 2\n")
    for expected in ("rotated", "skipped"):
        done = rotate(world.args())
        assert (done.returncode, done.stderr.decode()) == (0, warning)
        assert lines(done)["v1.enc"]["status"] == expected
    report = json.loads(ok(run(["inspect", "--json"], (world.dir / "v1.enc").read_bytes())))
    assert report["version"] == 1


def test_a_file_name_that_is_not_utf8_is_unicode_in_the_json_line_with_its_bytes_beside(tmp_path):
    """As the JSON of encpipe-list (README, "Names that are not UTF-8 in JSON"):
    before, `"file"` held `\\udcff`, Python's lone surrogate for the byte."""
    import base64
    import os

    world = World(tmp_path)
    world.add("x.enc", "--key-file", world.old_a)
    os.rename(world.dir / "x.enc", os.path.join(os.fsencode(world.dir), b"b\xffd.enc"))
    done = rotate(world.args())
    assert (done.returncode, done.stderr) == (0, b"") and done.stdout.isascii()
    [line] = [json.loads(text) for text in done.stdout.decode().splitlines()]
    assert (line["file"], line["status"]) == (f"{world.dir}/b\\xffd.enc", "rotated")
    assert base64.b64decode(line["file_base64"]) == os.fsencode(world.dir) + b"/b\xffd.enc"


def test_a_dry_run_says_of_a_version_1_file_with_sign_key_what_the_run_does(tmp_path):
    """--dry-run said `would-rotate`, exit 0, of a version 1 file the run then refused
    (67: it cannot be signed), run status 1."""
    world = World(tmp_path)
    (world.dir / "v1.enc").write_bytes(seal_v1(b"old data", key=world.old_hex))
    signing = tmp_path / "s.key"
    ok(run(["keygen", "--sign", "-o", str(signing)]))
    said = {}
    for dry in (["--dry-run"], []):
        done = rotate([*dry, "--sign-key", str(signing), *world.args()])
        line = lines(done)["v1.enc"]
        said[bool(dry)] = (done.returncode, line["status"], line["step"], line["exit"])
    assert said[True] == said[False] == (1, "error", "rewrap", 67), said
