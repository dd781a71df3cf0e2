"""Acceptance 3 and 9: per-command help, mistakes named, missing packages named.

`encpipe CMD --help` and `encpipe help CMD` print CMD's usage and only its
options, each on one line; the parser of CMD is built from that same text.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from cliutil import assert_one_line_error, key_env, ok, run
from encpipe import usage
from encpipe.cli import parse

REPO = Path(__file__).resolve().parent.parent
COMMANDS = [c for c in usage.COMMANDS if c != "help"]


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help_shows_its_usage_and_only_its_options(command):
    result = run([command, "--help"])
    assert (result.code, result.stderr) == (0, "")
    text = result.stdout.decode()
    assert run(["help", command]).stdout.decode() == text
    assert set(re.findall(r"^  encpipe (\w+)", text, re.M)) == {command}
    assert text.startswith(f"encpipe {command}: ")
    options = text.split("\nOptions:\n", 1)[1].splitlines()
    described = [line for line in options if line.startswith("  -")]
    for line in described:  # one line each: name, two spaces, a sentence
        assert re.match(r"^  -\S.*?\S  +\S", line), line
    named = {name for line in described for name in re.findall(r"(?<![\w-])--?[\w-]+", line.split("  ")[1])}
    assert named == usage.options_of(command)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_in_a_command_help_is_parsed(command):
    required = {"pubkey": ["FILE"]}.get(command, [])
    for option in sorted(usage.options_of(command) - {"-h", "--help"}):
        argv = [command, option, *(["x"] if usage.takes_argument(option) else []), *required]
        args = parse(command, argv)
        long_name = next(n for names, _ in usage.option_lines() if option in names for n in names if n[:2] == "--")
        assert args[long_name] not in (None, False, []), (argv, args)


def test_overview_is_the_usage_text():
    for argv in (["--help"], ["-h"], ["help"]):
        assert run(argv).stdout.decode() == usage.USAGE.strip() + "\n"


@pytest.mark.parametrize("argv", [["help", "--help"], ["help", "-h"], ["help", "help"]])
def test_help_has_the_help_its_own_usage_promises(argv):
    """`encpipe help --help` prints help's usage, whose second line is
    `encpipe help (-h | --help)`; before, it was refused (64, "help takes one command")."""
    result = run(argv)
    assert (result.code, result.stderr) == (0, "")
    assert result.stdout.decode() == usage.command_help("help").strip() + "\n"
    assert "  encpipe help (-h | --help)\n" in result.stdout.decode()


def test_keyid_help_says_which_variable_it_reads():
    """keyid reads ENCPIPE_KEY; a passphrase has no key id (ENCPIPE_PASSPHRASE alone: 64),
    so its help does not say ENCPIPE_PASSPHRASE is used, as the others' does."""
    text = run(["keyid", "--help"]).stdout.decode()
    assert text.endswith("\n  Without a key option, ENCPIPE_KEY (64 hex digits) is used"
                         " (a passphrase has no key id).\n")
    alone = run(["keyid"], env={"ENCPIPE_PASSPHRASE": "p"})
    assert (alone.code, alone.stdout) == (64, b"") and "passphrases have no key id" in alone.stderr
    assert ok(run(["keyid"], env={"ENCPIPE_PASSPHRASE": "p", **key_env()})).strip() == \
        ok(run(["keyid"], env=key_env())).strip()
    assert "and ENCPIPE_PASSPHRASE are used" in run(["open", "--help"]).stdout.decode()


@pytest.mark.parametrize("command", COMMANDS)
def test_an_unknown_option_is_named_with_exit_64(command):
    result = run([command, "--frobnicate"], env=key_env())
    assert (result.code, result.stdout) == (64, b"")
    assert "unknown option --frobnicate for " + command in result.stderr
    assert_one_line_error(result.stderr)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["open", "--keyfile", "k"], "unknown option --keyfile for open; did you mean --key-file?"),
        (["seal", "--recipients", "k"], "unknown option --recipients for seal; did you mean --recipient?"),
        (["open", "--recipient", "encpipe1x"], "open does not take --recipient: a public key cannot open a file; "
                                                "open with --identity"),
        (["inspect", "--recipient-file", "f"], "inspect does not take --recipient-file: a public key cannot open"),
        (["open", "-o", "out"], "open does not take -o: open writes to standard output"),
        (["rewrap", "--output", "out"], "rewrap does not take --output: rewrap writes to standard output"),
        (["seal", "--verify"], "seal does not take --verify (that is an option of inspect)"),
        (["seal", "dump.sql"], "unexpected argument for seal: seal reads standard input"),
        (["rewrap", "f.enc"], "use --in-place FILE"),
        (["open", "a", "b"], "open takes at most 1 argument besides options"),
        (["pubkey"], "pubkey needs FILE"),
        (["seal", "-o", "a", "-o", "b"], "-o given more than once"),
        (["seal", "--key-file"], "--key-file requires argument"),
        (["decrypt"], "unknown command 'decrypt'"),
        (["help", "nope"], "help takes one command"),
        ([], "no command given"),
    ],
)
def test_mistakes_are_named(argv, message):
    result = run(argv, env=key_env())
    assert (result.code, result.stdout) == (64, b"")
    assert message in result.stderr
    assert_one_line_error(result.stderr)


def test_a_misplaced_key_is_not_echoed():
    key = "9bc2" * 16
    for argv in (["seal", key], ["open", key, key], [key], ["seal", f"--key={key}"]):
        result = run(argv, env=key_env())
        assert result.code == 64 and key not in result.stderr and key[:16] not in result.stderr


def test_a_command_guess_for_close_and_common_names():
    assert "did you mean encpipe open?" in run(["decrypt"]).stderr
    assert "did you mean encpipe inspect?" in run(["inspcet"]).stderr


# --- acceptance 9: a missing dependency is one line ----------------------------------

MISSING = 'raise ModuleNotFoundError("No module named {0!r}", name={0!r})\n'
OLD_DOCOPT = ('__version__ = "0.6.2"\n\n'
              "def docopt(doc, argv=None, help=True, version=None, options_first=False):\n    pass\n")


def _shimmed(tmp_path, files, argv, **extra_env):
    """python -m encpipe with a sys.path entry in front that hides or replaces modules."""
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    env = {"PYTHONPATH": f"{tmp_path}:{REPO}", "ENCPIPE_KEY": "a" * 64, "PATH": "/usr/bin:/bin", **extra_env}
    return subprocess.run([sys.executable, "-m", "encpipe", *argv], input=b"data", capture_output=True, env=env)


@pytest.mark.parametrize(
    "files, package",
    [
        ({"Crypto/__init__.py": MISSING.format("Crypto")}, "pycryptodome"),
        ({"docopt/__init__.py": MISSING.format("docopt")}, "docopt-ng"),
        ({"docopt/__init__.py": MISSING.format("docopt"), "Crypto/__init__.py": MISSING.format("Crypto")},
         "pycryptodome docopt-ng"),
    ],
)
def test_a_missing_package_is_named_in_one_line_with_exit_69(tmp_path, files, package):
    done = _shimmed(tmp_path, files, ["seal"])
    assert (done.returncode, done.stdout) == (69, b"")
    stderr = done.stderr.decode()
    assert_one_line_error(stderr)
    assert f"pip install {package}" in stderr
    if " " in package:
        assert "install the packages pycryptodome, docopt-ng" in stderr
    else:
        assert f"install the package {package}" in stderr
    if "docopt-ng" in package:
        assert "not docopt: 0.6 is another, older package" in stderr


def test_the_old_docopt_is_named_as_the_wrong_package(tmp_path):
    done = _shimmed(tmp_path, {"docopt.py": OLD_DOCOPT}, ["seal"])
    assert (done.returncode, done.stdout) == (69, b"")
    assert_one_line_error(done.stderr.decode())
    assert "docopt 0.6.2 is the old package; encpipe needs docopt-ng" in done.stderr.decode()


def test_help_and_version_need_no_cryptography(tmp_path):
    hidden = {"Crypto/__init__.py": MISSING.format("Crypto")}
    assert _shimmed(tmp_path, hidden, ["--version"]).returncode == 0
    assert _shimmed(tmp_path, hidden, ["seal", "--help"]).returncode == 0


def test_version_names_no_cipher_that_is_not_installed(tmp_path):
    """On a Python with neither pycryptodome nor a usable `cryptography` (Debian's
    python3, whose cryptography is 38, run on the checkout), `encpipe --version` said
    `1.0.0 (cipher: pycryptodome)`, 0, while every command was 69 for want of it:
    Installing says --version names the one in use, and a missing package is 69."""
    hidden = {"Crypto/__init__.py": MISSING.format("Crypto"), "cryptography/__init__.py": MISSING.format("cryptography")}
    for forced in ({}, {"ENCPIPE_CIPHER": "pycryptodome"}):
        done = _shimmed(tmp_path, hidden, ["--version"], **forced)
        assert (done.returncode, done.stdout) == (69, b""), (forced, done.stderr)
        assert_one_line_error(done.stderr.decode())
        assert "install the package pycryptodome" in done.stderr.decode()


@pytest.mark.parametrize("script", ["encpipe-list", "encpipe-prune", "encpipe-verify", "encpipe-check"])
def test_the_python_scripts_name_a_missing_package_in_one_line_too(tmp_path, script):
    """(encpipe-rotate parses with argparse and leaves the cryptography to its encpipe
    children, which say the same themselves; the others: below.)"""
    (tmp_path / "docopt").mkdir()
    (tmp_path / "docopt" / "__init__.py").write_text(MISSING.format("docopt"))
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, str(REPO / "scripts" / script), str(tmp_path)], capture_output=True, env=env)
    stderr = done.stderr.decode()
    unknown = f"UNKNOWN: {stderr.splitlines()[0].partition(': error: ')[2]}\n".encode()  # a plugin's (69 before)
    assert (done.returncode, done.stdout) == ((3, unknown) if script == "encpipe-check" else (69, b"")), stderr
    assert_one_line_error(stderr, prog=script)
    assert stderr.startswith(f"{script}: error: cannot import the Python module docopt")
    assert "pip install docopt-ng" in stderr


@pytest.mark.parametrize("command", ["list", "verify"])
def test_the_backup_module_names_a_missing_package_in_one_line_too(tmp_path, command):
    """Installing: a missing Python package is one line naming what to install (69);
    each script's --help says it runs as `python3 -I -m encpipe.backup`, which without
    docopt-ng was a traceback (encpipe/backup/cli.py's import) and status 1."""
    (tmp_path / "docopt").mkdir()
    (tmp_path / "docopt" / "__init__.py").write_text(MISSING.format("docopt"))
    env = {"PYTHONPATH": f"{tmp_path}:{REPO}", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "encpipe.backup", command, str(tmp_path)], capture_output=True,
                          env=env, cwd=tmp_path, stdin=subprocess.DEVNULL, timeout=60)
    stderr = done.stderr.decode()
    assert (done.returncode, done.stdout) == (69, b""), stderr
    assert_one_line_error(stderr, prog=f"encpipe-{command}")
    assert "cannot import the Python module docopt" in stderr and "pip install docopt-ng" in stderr


@pytest.mark.parametrize("script, args", [
    ("encpipe-backup", ["--dir", "DIR", "db"]),
    ("encpipe-backup", ["--help"]),
    ("encpipe-restore", ["FILE", "db"]),
    ("encpipe-migrate", ["--legacy-key-file", "KEY", "DIR"]),
])
def test_the_other_scripts_name_a_missing_cryptography_in_one_line(tmp_path, script, args):
    """encpipe-backup and -restore (bash, through python -m encpipe.launch) and
    encpipe-migrate (which imports the cryptography when it needs it) too."""
    shim = tmp_path / "shim"
    (shim / "Crypto").mkdir(parents=True)
    (shim / "Crypto" / "__init__.py").write_text(MISSING.format("Crypto"))
    key = tmp_path / "key"
    key.write_text("a" * 64 + "\n")
    key.chmod(0o600)
    names = {"DIR": str(tmp_path), "KEY": str(key), "FILE": str(key)}
    env = {"PYTHONPATH": str(shim), "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "ENCPIPE_KEY": "a" * 64}
    done = subprocess.run([str(REPO / "scripts" / script), *[names.get(a, a) for a in args]], capture_output=True,
                          env=env, cwd=tmp_path, stdin=subprocess.DEVNULL, timeout=60)
    assert (done.returncode, done.stdout) == (69, b""), done.stderr.decode()
    stderr = done.stderr.decode()
    assert_one_line_error(stderr, prog=script)
    assert stderr.startswith(f"{script}: error: cannot import the Python module") and "pycryptodome" in stderr


def test_keyid_help_describes_its_key_options_as_keys_to_name_not_to_seal_or_sign_with():
    """keyid's --help reused seal's and open's lines ("Seal to this public key", "Sign
    with the signing key", "Refuse a file not signed by ... (else ENCPIPE_SIGNER)"):
    keyid seals, signs and refuses nothing, and reads no ENCPIPE_SIGNER."""
    text = run(["keyid", "--help"]).stdout.decode()
    lines = {line.split()[0]: line for line in text.splitlines() if line.startswith("  --")}
    for option in ("--recipient", "--recipient-file", "--sign-key", "--signer", "--signer-file"):
        assert not re.search(r"\b(Seal|Sign with|Refuse|ENCPIPE_SIGNER)\b", lines[option]), lines[option]
    assert lines["--signer"] == "  --signer PUBKEY            A verify key (encpipesign1...), as keygen --sign prints it."
    assert "Seal to this public key" in run(["seal", "--help"]).stdout.decode()


# Standard library extensions each script imports (dirlock's fcntl; resource, as it sets
# itself up: cli.no_core_dumps), which a module of the same name earlier on sys.path stands
# in for; one built into the interpreter (fcntl in Debian's python3) is never looked for there.
_SHADOWED = [name for name in ("fcntl", "resource") if name not in sys.builtin_module_names]


@pytest.mark.parametrize("module", _SHADOWED)
@pytest.mark.parametrize("script", ["encpipe-list", "encpipe-prune", "encpipe-verify", "encpipe-check"])
@pytest.mark.parametrize("error, line, status", [
    # what dlopen says when the mapping of a library fails: out of memory (prlimit --as), one line and 74
    ("{}.so: failed to map segment from shared object", "out of memory", 74),
    # an import of no dependency of encpipe's failing otherwise: a bug's one line, 70
    ("{} is broken here", "internal error: ImportError at {}.py:1", 70),
])
def test_an_import_that_fails_for_another_reason_is_one_line_not_a_traceback(tmp_path, module, script, error, line,
                                                                              status):
    """A standard library extension that cannot be mapped (a memory limit) as a
    script imports it: before, report_missing raised the ImportError again, out of
    its handler, and the script ended with a traceback, status 1; so it did for
    resource, imported as the script set itself up (cli.run_script's no_core_dumps)."""
    error, line = error.format(module), line.format(module)
    (tmp_path / f"{module}.py").write_text(f"raise ImportError({error!r})\n")
    env = {"PYTHONPATH": f"{tmp_path}:{REPO}", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, str(REPO / "scripts" / script), str(tmp_path)], capture_output=True,
                          env=env, stdin=subprocess.DEVNULL, timeout=60)
    stderr = done.stderr.decode()
    if script == "encpipe-check":  # a plugin: UNKNOWN, 3
        assert (done.returncode, done.stdout.decode()) == (3, f"UNKNOWN: {stderr.partition(': error: ')[2]}"), stderr
    else:
        assert (done.returncode, done.stdout) == (status, b""), stderr
    assert_one_line_error(stderr, prog=script)
    assert stderr.startswith(f"{script}: error: {line}"), stderr


def test_a_dependency_found_but_failing_to_import_says_why():
    """A dependency that is installed but whose import fails otherwise (a name it lacks,
    a library of its own that cannot be loaded) still names the package, and says what
    failed: once, under a memory limit, a backup said only `cannot import the Python
    module Crypto: install the package pycryptodome` (69), of an installed pycryptodome.
    One that is not there says no more than that."""
    from encpipe import deps

    failing = ImportError("cannot import name 'AES' from partially initialized module 'Crypto.Cipher'",
                          name="Crypto.Cipher")
    assert str(deps.missing_dependency(failing)) == (
        "cannot import the Python module Crypto (cannot import name 'AES' from partially initialized module "
        "'Crypto.Cipher'): install the package pycryptodome")
    absent = ModuleNotFoundError("No module named 'Crypto'", name="Crypto")
    assert str(deps.missing_dependency(absent)) == "cannot import the Python module Crypto: install the package " \
                                                   "pycryptodome"


def test_a_dependency_whose_library_cannot_be_mapped_is_out_of_memory_not_missing(monkeypatch):
    """Under a memory limit, `cryptography`'s library that cannot be mapped made the
    cipher fall back to pycryptodome, whose import failed as well, and the run said
    `cannot import the Python module Crypto: install the package pycryptodome` (69):
    a dependency that is installed. It is `out of memory` (74), and no fallback."""
    from io import StringIO

    from encpipe import aead, deps, gcmlibs
    from encpipe.cli import Io

    unmapped = ImportError("/venv/cryptography/hazmat/bindings/_rust.abi3.so: failed to map segment from shared "
                           "object", name="cryptography.hazmat.bindings._rust")
    assert deps.missing_dependency(unmapped) is None
    err = StringIO()
    assert deps.report_missing(Io(None, None, err, {}), unmapped) == 74
    assert err.getvalue() == "encpipe: error: out of memory\n"

    def unmappable(cls):
        raise unmapped

    def fallback(cls):
        raise AssertionError("pycryptodome tried")

    monkeypatch.delenv(aead.ENV_CIPHER, raising=False)
    monkeypatch.setattr(aead, "_usable", {})
    monkeypatch.setattr(gcmlibs.Cryptography, "load", classmethod(unmappable))
    monkeypatch.setattr(gcmlibs.Pycryptodome, "load", classmethod(fallback))
    with pytest.raises(ImportError) as raised:
        aead.library()
    assert raised.value is unmapped
    with pytest.raises(ImportError) as raised:  # --version's answer: not pycryptodome, which seal would not use
        aead.name_in_use({})
    assert raised.value is unmapped


def _console_scripts():
    import configparser

    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    lines = config["options.entry_points"]["console_scripts"].strip().splitlines()
    return dict((part.strip() for part in line.split("=")) for line in lines if not line.startswith("encpipe "))


@pytest.mark.parametrize("script", sorted(_console_scripts()))
def test_each_python_scripts_console_entry_point_is_the_script(script):
    """encpipe-list and the other Python scripts are installed as console scripts (a
    `scripts =` file's #! line cannot name a python under a path with a space; pip's
    console script can), while scripts/ keeps them for a checkout: both say the same."""
    module, function = _console_scripts()[script].split(":")
    code = f"import sys; from {module} import {function}; sys.argv[1:] = ['--help']; sys.exit({function}())"
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    entry = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env, timeout=60)
    checkout = subprocess.run([sys.executable, str(REPO / "scripts" / script), "--help"], capture_output=True,
                              env=env, timeout=60)
    assert (entry.returncode, entry.stdout, entry.stderr) == (0, checkout.stdout, b"") and checkout.returncode == 0
    assert script in entry.stdout.decode()
