"""encpipe-migrate says so when a new file's maker is not authenticated.

Sealed to public keys only (`--identity FILE` as the one new key, README's own
example) and not signed, a new file can have been made by anyone with the public
key: encpipe-restore refuses it (67) without --allow-unauthenticated, and prune
does not count it, where the previous tool's file it replaced counted as made by
its key. Migrate did that in silence, exit 0. Now its line has
"sender_authenticated": false and a warning names it before the line; the file is
converted all the same."""

import subprocess
import sys

from test_migrate import FEW, ENCPIPE, make_backups, migrate

WARNING = "the new file's maker is not authenticated"


def identity(tmp_path, name="new.id"):
    path = str(tmp_path / name)
    subprocess.run([sys.executable, "-m", "encpipe", "keygen", "--x25519", "-o", path], check=True,
                   capture_output=True)
    return path


def legacy_keys(keys):
    return ["--legacy-key-file", keys["old_key"], "--legacy-passphrase-file", keys["old_pass"]]


def test_new_files_sealed_to_an_identity_only_are_said_unauthenticated(tmp_path, keys):
    directory = tmp_path / "backups"
    expected = make_backups(directory, FEW, python_made=False)
    new_id = identity(tmp_path)
    status, lines, err = migrate(directory, *legacy_keys(keys), "--identity", new_id)
    assert status == 0, err
    migrated = [line for line in lines if line["status"] == "migrated"]
    assert sorted(line["file"] for line in migrated) == sorted(expected)
    assert all(line.get("sender_authenticated") is False for line in migrated), migrated
    assert err == "".join(
        f"encpipe-migrate: warning: {name}: {WARNING} (sealed to public keys only, and not signed): "
        "encpipe-restore refuses it (67) without --allow-unauthenticated; add --key-file or --passphrase-file, "
        "or give --sign-key\n" for name in sorted(expected))
    opened = subprocess.run([*ENCPIPE.split(), "open", "--identity", new_id, "--refuse-unauthenticated"],
                            stdin=open(directory / sorted(expected)[0], "rb"), capture_output=True)
    assert (opened.returncode, opened.stdout) == (67, b"")


def test_a_raw_key_or_a_signature_keeps_it_unsaid(tmp_path, keys):
    new_id = identity(tmp_path)
    sign = str(tmp_path / "s.sign")
    subprocess.run([*ENCPIPE.split(), "keygen", "--sign", "-o", sign], check=True, capture_output=True)
    for n, extra in enumerate((["--key-file", keys["new_key"]], ["--sign-key", sign])):
        directory = tmp_path / f"backups{n}"
        make_backups(directory, FEW, python_made=False)
        status, lines, err = migrate(directory, *legacy_keys(keys), "--identity", new_id, *extra)
        assert (status, err) == (0, "")
        migrated = [line for line in lines if line["status"] == "migrated"]
        assert len(migrated) == len(FEW) and not [line for line in migrated if "sender_authenticated" in line]
