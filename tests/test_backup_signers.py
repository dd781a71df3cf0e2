"""Trusted signers in the backup tools (issue 14, scripts): encpipe-verify and
encpipe-prune take --signer / --signer-file (else ENCPIPE_SIGNER) and then count
only signed files as good; prune never removes a backup on the strength of a file
that fails the signer check. The systemd unit loads a signing key as a credential."""

import io
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from encpipe import RawKey, seal
from encpipe.backup import unit
from encpipe.signing import SigningKey, VerifyKey
from test_backup_dir import CHUNK_LOG2, KEY, ROOT, by_name, names, run, stamp, write

START = datetime(2023, 1, 1, tzinfo=timezone.utc)
S1, S2 = SigningKey.generate(), SigningKey.generate()
PUB1, PUB2 = str(S1.verify_key), str(S2.verify_key)
NEUTRAL = str(VerifyKey((1).to_bytes(32, "little")))  # of small order: README "Edge rules"


def sealed(*signing_keys, key=KEY):
    dst = io.BytesIO()
    seal(io.BytesIO(os.urandom(20000)), dst, [RawKey(key)], chunk_log2=CHUNK_LOG2, signing_keys=signing_keys)
    return dst.getvalue()


def day(i, ext="sql"):
    return f"shop_{stamp(START + timedelta(days=i))}.{ext}.enc"


def signer_file(tmp_path, *keys):
    path = tmp_path / "signers"
    path.write_text("# the backup hosts\n" + "".join(f"{k}\n" for k in keys))
    return str(path)


@pytest.fixture
def mixed(tmp_path):
    d = tmp_path / "b"
    d.mkdir()
    write(d, day(1), sealed(S1))
    write(d, day(2), sealed())  # unsigned: anyone with the key made it
    write(d, day(3), sealed(S2))
    write(d, day(4), sealed(S2, S1))
    return d


@pytest.mark.parametrize("how", ["--signer", "--signer-file", "ENCPIPE_SIGNER"])
def test_verify_with_a_signer_fails_files_it_did_not_sign(mixed, tmp_path, how):
    args = {"--signer": ["--signer", PUB1], "--signer-file": ["--signer-file", signer_file(tmp_path, PUB1)],
            "ENCPIPE_SIGNER": []}[how]
    env = {"ENCPIPE_KEY": KEY.hex(), **({"ENCPIPE_SIGNER": PUB1} if how == "ENCPIPE_SIGNER" else {})}
    code, report, err = run("verify", *args, str(mixed), env=env)
    assert code == 67, err
    results = by_name(report["results"])
    assert [results[day(i)]["ok"] for i in (1, 2, 3, 4)] == [True, False, False, True]
    assert {results[day(i)]["error_class"] for i in (2, 3)} == {"not_signed"}
    assert (report["verified"], report["failed"]) == (2, 2)
    assert f"{mixed / day(2)}: not signed by a trusted signer" in err
    # a file named on the command line, likewise
    code, report, _ = run("verify", *args, str(mixed / day(3)), env=env)
    assert (code, report["failed"]) == (67, 1)
    code, report, _ = run("verify", *args, str(mixed / day(4)), env=env)
    assert (code, report["verified"]) == (0, 1)


def test_verify_without_a_signer_accepts_them_all_and_the_option_overrides_the_environment(mixed):
    assert run("verify", str(mixed))[0] == 0
    env = {"ENCPIPE_KEY": KEY.hex(), "ENCPIPE_SIGNER": PUB1}
    code, report, _ = run("verify", "--signer", PUB2, str(mixed), env=env)
    assert code == 67
    assert [by_name(report["results"])[day(i)]["ok"] for i in (1, 2, 3, 4)] == [False, False, True, True]


def test_verify_with_a_signer_refuses_a_file_of_the_previous_tool(tmp_path):
    from encpipe.legacy import seal_legacy

    with open(tmp_path / "crm_backup_2025-11-18_06-25-03-303Z.sql.enc", "wb") as dst:
        seal_legacy(io.BytesIO(b"SELECT 1;\n" * 100), dst, KEY)
    assert run("verify", str(tmp_path))[0] == 0
    code, report, _ = run("verify", "--signer", PUB1, str(tmp_path))
    assert (code, report["results"][0]["ok"], report["results"][0]["error_class"]) == (67, False, "not_signed")


@pytest.mark.parametrize("how", ["--signer", "ENCPIPE_SIGNER"])
def test_prune_never_counts_a_file_that_fails_the_signer_check(tmp_path, how):
    """Three signed backups, then two newer ones made by someone who holds the key but
    not the signing key: with --keep 1, the newest *signed* backup is kept and the
    unsigned ones are left (never removed, never counted)."""
    for i in (1, 2, 3):
        write(tmp_path, day(i), sealed(S1))
    for i in (4, 5):
        write(tmp_path, day(i), sealed())
    write(tmp_path, day(6), sealed(S2))
    args, env = (["--signer", PUB1], {"ENCPIPE_KEY": KEY.hex()}) if how == "--signer" else \
        ([], {"ENCPIPE_KEY": KEY.hex(), "ENCPIPE_SIGNER": PUB1})
    code, report, err = run("prune", *args, str(tmp_path), "--keep", "1", env=env)
    assert code == 65, err
    assert [k["filename"] for k in report["kept"]] == [day(3)]
    assert [r["filename"] for r in report["removed"]] == [day(1), day(2)]
    assert [r["filename"] for r in report["left"]] == [day(4), day(5), day(6)]
    assert all(r["reasons"][0].startswith("failed verification: not signed by a trusted signer")
               for r in report["left"])
    assert sorted(names(tmp_path)) == [day(3), day(4), day(5), day(6)]
    assert report["unprotected"] == []


def test_prune_with_a_signer_and_no_signed_backup_removes_nothing(tmp_path):
    for i in (1, 2, 3):
        write(tmp_path, day(i), sealed())
    code, report, _ = run("prune", "--signer", PUB1, str(tmp_path), "--keep", "1")
    assert code == 65
    assert (report["kept"], report["removed"]) == ([], [])
    assert report["unprotected"] == ["shop (plain)"]
    assert sorted(names(tmp_path)) == [day(1), day(2), day(3)]


@pytest.mark.parametrize("command", ["prune", "verify"])
@pytest.mark.parametrize("argv, code", [
    (["--signer", "encpipesign1abc"], 64),
    (["--signer", "encpipe1hv3r5k"], 64),
    (["--signer-file", "MISSING"], 66),
    (["--signer", NEUTRAL], 64),
    (["--signer-file", "NEUTRAL"], 64),
])
def test_a_bad_signer_is_refused_before_any_file_is_read_or_removed(tmp_path, command, argv, code):
    d = tmp_path / "b"
    d.mkdir()
    for i in (1, 2):
        write(d, day(i), sealed(S1))
    (tmp_path / "neutral").write_text(f"{PUB1}\n{NEUTRAL}\n")
    argv = [str(tmp_path / a.lower()) if a in ("MISSING", "NEUTRAL") else a for a in argv]
    policy = ["--keep", "1"] if command == "prune" else []
    got, report, err = run(command, *argv, *policy, str(d))
    assert (got, report) == (code, None), err
    assert err.startswith(f"encpipe-{command}: error: ") and "Traceback" not in err
    assert sorted(names(d)) == [day(1), day(2)]


def test_the_systemd_unit_loads_a_signing_key_as_a_credential():
    text = unit.render("/usr/local/bin/encpipe-backup", [
        "--dir", "/var/backups/encpipe", "--key-file", "${CREDENTIALS_DIRECTORY}/encpipe-backup.key",
        "--sign-key", "${CREDENTIALS_DIRECTORY}/encpipe-backup.sign"])
    lines = text.splitlines()
    assert "LoadCredential=encpipe-backup.key:/etc/encpipe/backup.key" in lines
    assert "LoadCredential=encpipe-backup.sign:/etc/encpipe/backup.sign" in lines
    assert ("ExecStart=/usr/local/bin/encpipe-backup --dir /var/backups/encpipe --key-file "
            "${CREDENTIALS_DIRECTORY}/encpipe-backup.key --sign-key ${CREDENTIALS_DIRECTORY}/encpipe-backup.sign -- %I"
            ) in lines
    # without --sign-key, no signing credential (the shipped unit stays as it is)
    assert not any(".sign" in line for line in unit.render("/usr/local/bin/encpipe-backup", []).splitlines())


def _cli(*argv):
    proc = subprocess.run([sys.executable, "-m", "encpipe", *argv], capture_output=True, check=True,
                          env={**os.environ, "PYTHONPATH": ROOT})
    return proc.stdout.decode()


def test_list_names_who_signed_each_file_as_keyid_and_inspect_do(mixed):
    v1 = io.BytesIO()
    seal(io.BytesIO(b"x" * 100), v1, [RawKey(KEY)], chunk_log2=CHUNK_LOG2, version=1)
    write(mixed, day(5), v1.getvalue())
    write(mixed, day(6), os.urandom(200))  # a file of the previous tool: no magic
    write(mixed, day(7), sealed(S1)[:-3627])  # damaged: its second record is shorter than a tag
    lister = os.path.join(ROOT, "scripts", "encpipe-list")
    proc = subprocess.run([lister, str(mixed)], capture_output=True, env={**os.environ, "PYTHONPATH": ROOT})
    assert (proc.returncode, proc.stderr) == (0, b"")
    files = by_name(json.loads(proc.stdout))
    id1, id2 = (_cli("keyid", "--signer", pub).strip() for pub in (PUB1, PUB2))
    assert id1 == S1.verify_key.key_id.hex() and id2 != id1
    expected = {day(1): [id1], day(2): [], day(3): [id2], day(4): [id2, id1]}
    assert {name: files[name]["signers"] for name in expected} == expected
    for name in expected:  # as `encpipe inspect --json` names them
        assert json.loads(_cli("inspect", "--json", str(mixed / name)))["signers"] == expected[name]
    # A v1 file, a file of the previous tool and a damaged one cannot name signers: null.
    assert [(files[day(i)]["status"], files[day(i)]["signers"]) for i in (5, 6, 7)] == [
        ("sealed", None), ("legacy", None), ("damaged", None)]
