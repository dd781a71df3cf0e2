"""encpipe-migrate and signing (issue 14, scripts): --sign-key signs the new files;
with trusted signers (--signer, --signer-file, ENCPIPE_SIGNER) each new file must
verify as signed by one of them, and the previous tool's files (which carry no
signature) are still read."""

import json
import subprocess
import sys

import pytest

from spies import python_head
from test_migrate import FEW, make_backups, migrate, open_new, sha, snapshot

VERIFY = [sys.executable, "-m", "encpipe", "inspect", "--json", "--verify"]

# An encpipe whose `seal` drops every --sign-key: the files it makes are not signed.
UNSIGNED_SEAL = """{head}
import os, sys
args = sys.argv[1:]
if args[:1] == ["seal"]:
    args = [w for w in args if not w.startswith("--sign-key=")]  # migrate gives each as --option=VALUE
os.execv({python!r}, [{python!r}, "-m", "encpipe", *args])
"""


def signing_key(tmp_path, name):
    path = tmp_path / name
    verify = subprocess.run([sys.executable, "-m", "encpipe", "keygen", "--sign", "-o", str(path)], check=True,
                            capture_output=True).stdout.decode().strip()
    key_id = subprocess.run([sys.executable, "-m", "encpipe", "keyid", "--signer", verify], check=True,
                            capture_output=True).stdout.decode().strip()
    return str(path), verify, key_id


@pytest.fixture(scope="module")
def signers(tmp_path_factory):
    """Two signing keys (path, verify key, key id), made once for the module: no test changes them."""
    tmp_path = tmp_path_factory.mktemp("signers")
    return signing_key(tmp_path, "s1.sign"), signing_key(tmp_path, "s2.sign")


@pytest.mark.parametrize("trust", ["--signer", "--signer-file", "ENCPIPE_SIGNER", None])
def test_migrated_files_are_signed_and_verified(tmp_path, keys, signers, trust):
    (sign1, pub1, id1), _ = signers
    directory = tmp_path / "backups"
    expected = make_backups(directory, FEW)
    (tmp_path / "trusted").write_text(f"# backup host\n{pub1}\n")
    extra = {"--signer": ["--signer", pub1], "--signer-file": ["--signer-file", str(tmp_path / "trusted")]}
    env = {"ENCPIPE_SIGNER": pub1} if trust == "ENCPIPE_SIGNER" else {}
    status, lines, err = migrate(directory, "--sign-key", sign1, *extra.get(trust, []), keys=keys, env=env)
    assert status == 0, err
    assert {line["file"]: line["status"] for line in lines if line["file"] in expected} == \
        {name: "migrated" for name in expected}
    key_file = tmp_path / "new.key"
    for name in expected:
        assert sha(open_new(str(directory / name))) == expected[name]
        done = subprocess.run([*VERIFY, "--key-file", str(key_file), "--signer", pub1, str(directory / name)],
                              capture_output=True)
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert (report["signed_by"], report["trusted_signer"]) == ([id1], id1)


@pytest.mark.parametrize("case", ["ENCPIPE_SIGNER without --sign-key", "--sign-key not trusted", "bad --signer",
                                  "empty --signer-file"])
def test_refused_before_any_file_is_touched(tmp_path, keys, signers, case):
    (sign1, pub1, _), (sign2, _, _) = signers
    directory = tmp_path / "backups"
    make_backups(directory, FEW)
    (tmp_path / "empty").write_text("# nobody\n")
    before = snapshot(directory)
    argv, env = {
        "ENCPIPE_SIGNER without --sign-key": ([], {"ENCPIPE_SIGNER": pub1}),
        "--sign-key not trusted": (["--sign-key", sign2, "--signer", pub1], {}),
        "bad --signer": (["--sign-key", sign1, "--signer", "encpipesign1abc"], {}),
        "empty --signer-file": (["--sign-key", sign1, "--signer-file", str(tmp_path / "empty")], {}),
    }[case]
    status, lines, err = migrate(directory, *argv, keys=keys, env=env)
    assert (status, lines) == (64, []), err
    assert err.startswith("encpipe-migrate: error: ") and "Traceback" not in err
    assert snapshot(directory) == before


@pytest.mark.parametrize("trusted, code", [(True, 67), (False, 70)])
def test_a_new_file_that_is_not_signed_is_refused_and_the_original_kept(tmp_path, keys, signers,
                                                                        trusted, code):
    (sign1, pub1, _), _ = signers
    directory = tmp_path / "backups"
    expected = make_backups(directory, FEW, python_made=False)
    before = snapshot(directory)
    wrapper = tmp_path / "unsigned-seal"
    wrapper.write_text(UNSIGNED_SEAL.format(head=python_head(), python=sys.executable))
    wrapper.chmod(0o700)
    status, lines, err = migrate(directory, "--sign-key", sign1, *(["--signer", pub1] if trusted else []),
                                 keys=keys, encpipe=str(wrapper))
    assert status == code, err
    for line in lines:
        if line["file"] in expected:
            assert (line["status"], line["exit_code"]) == ("failed", code), line
    assert snapshot(directory) == before
