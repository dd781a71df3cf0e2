"""No import circle among encpipe's modules, counting the imports made inside
functions (kept there for start-up time) as well as those at the top."""

import ast
import os
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "encpipe"


def _modules():
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(name, path, modules):
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            module = (base + "." + node.module if node.module else base) if node.level else node.module or ""
            for alias in node.names:
                target = module + "." + alias.name
                yield target if target in modules else module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def import_graph():
    modules = _modules()
    return {name: {t for t in _imports(name, path, modules) if t in modules and t != name}
            for name, path in modules.items()}


def find_cycle(graph):
    """One cycle of `graph` as a list of names (first == last), or None."""
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt, path + [nxt])
                if found:
                    return found
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start, [start])
            if found:
                return found
    return None


def test_the_checker_finds_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_of_encpipe_imports_itself_in_a_circle():
    graph = import_graph()
    assert {"encpipe.cli", "encpipe.commands", "encpipe.envelope", "encpipe.backup.job"} <= set(graph)
    assert "encpipe.keyargs" in graph["encpipe.commands"]
    assert find_cycle(graph) is None


def test_a_backup_loads_no_module_of_pruning_metrics_or_the_prune_cli_until_it_needs_one():
    """encpipe-backup without --keep..., --metrics-file or --systemd-unit imports none of
    them (start-up time: dataclasses, concurrent.futures, logging come with them), and
    the commit's listing only once pg_dump runs."""
    import subprocess
    import sys

    probe = ("import sys, encpipe.pgbackup, encpipe.backup.job\n"
             "print(' '.join(sorted(m for m in sys.modules if m.startswith('encpipe.backup.') or m == 'concurrent')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         cwd=PACKAGE.parent, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(PACKAGE.parent)}).stdout
    loaded = set(out.split())
    assert "encpipe.backup.job" in loaded
    assert loaded.isdisjoint({"encpipe.backup.prune", "encpipe.backup.retention", "encpipe.backup.metrics",
                              "encpipe.backup.verify", "encpipe.backup.cli", "encpipe.backup.unit", "concurrent",
                              "encpipe.backup.listing"})  # the commit's: imported once pg_dump runs


def test_a_restore_loads_no_cipher_command_nor_remote_store_module():
    """encpipe-restore decrypts nothing itself (each `encpipe open` does) and reads a local
    FILE without rclone: it imports neither encpipe.commands (and the envelope, provenance,
    signing behind it) nor the remote store's modules (dataclasses behind them)."""
    import subprocess
    import sys

    probe = "import sys, encpipe.pgrestore\nprint(' '.join(sorted(m for m in sys.modules if m.startswith('encpipe.'))))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         cwd=PACKAGE.parent, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(PACKAGE.parent)}).stdout
    loaded = set(out.split())
    assert "encpipe.pgrestore" in loaded and "encpipe.pgfetch" in loaded
    assert loaded.isdisjoint({"encpipe.commands", "encpipe.envelope", "encpipe.provenance", "encpipe.backup.storage",
                              "encpipe.backup.localstore", "encpipe.backup.rclonestore", "encpipe.backup.records"})


def test_a_restore_run_loads_no_key_slot_signing_or_cipher_module(tmp_path):
    """encpipe-restore checks its key options but reads no key itself (its `encpipe keyid`
    and `encpipe open` do): keys imports the key slots (hmac, OpenSSL's hashlib) where a
    key is made, no --signer loads no signing, and a number option's parser (workers)
    no cipher. Before, each backup and restore imported them all at its start.
    Here it fails at its first psql (no server): everything before that has run."""
    import subprocess
    import sys

    key = tmp_path / "k.key"
    with open(os.open(key, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
        f.write("ab" * 32 + "\n")
    (tmp_path / "shop.sql.enc").write_bytes(b"x")
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "encpipe.launch", "encpipe-restore",
                           "encpipe.pgrestore", "--key-file", str(key),
                           str(tmp_path / "shop.sql.enc"), "shop"],
                          capture_output=True, cwd=PACKAGE.parent, stdin=subprocess.DEVNULL,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(PACKAGE.parent), "PGHOST": str(tmp_path)})
    said = [line for line in done.stderr.decode().splitlines() if not line.startswith("import time:")]
    assert done.returncode != 0 and said[-1].endswith("nothing was changed"), said
    loaded = {line.rsplit("|", 1)[1].strip() for line in done.stderr.decode().splitlines()
              if line.startswith("import time:")}
    assert {"encpipe.pgrestorechild", "encpipe.keycheck", "encpipe.keys", "encpipe.workers"} <= loaded
    spared = {"encpipe.slots", "encpipe.signing", "encpipe.aead", "encpipe.format", "hmac", "_hashlib"}
    assert loaded.isdisjoint(spared), sorted(loaded & spared)


def _loaded_by(*argv, env=(), stdin=b""):
    """The modules `encpipe ARGV...` imports (python -X importtime's list)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "encpipe", *argv], capture_output=True,
                          input=stdin, cwd=PACKAGE.parent,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(PACKAGE.parent), **dict(env)})
    return {line.rsplit("|", 1)[1].strip() for line in done.stderr.decode().splitlines()
            if line.startswith("import time:")}


def test_inspect_and_keyid_load_no_module_of_writing_a_file():
    """`inspect` and `keyid`, which write no file, import neither the atomic writer nor
    what it needs (grp): seal -o and rewrap --in-place import it when they run.
    Moving the bounded readers out of it once made them load one module more."""
    for argv in (["inspect", "/dev/null"], ["keyid", "--key-file", "/dev/null"]):
        loaded = _loaded_by(*argv)
        assert "encpipe.commands" in loaded
        assert loaded.isdisjoint({"encpipe.safefile", "grp"}), argv


def test_only_a_usage_error_loads_difflib():
    """difflib (and heapq) is for naming what a mistyped command or option probably
    meant: a run that makes no usage error, of encpipe or of a script built on the
    same modules, does not import it (about a millisecond of each start, and the
    test suite starts thousands)."""
    import subprocess
    import sys

    for argv in (["--version"], ["inspect", "/dev/null"], ["keyid", "--key-file", "/dev/null"]):
        assert "difflib" not in _loaded_by(*argv), argv
    probe = ("import sys, encpipe.cli, encpipe.commands, encpipe.backup.cli, encpipe.pgbackupargs, encpipe.pgrestore,"
             " encpipe.migrate, encpipe.rotate\nprint('difflib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         cwd=PACKAGE.parent, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(PACKAGE.parent)}).stdout
    assert out == "False\n"
    assert "difflib" in _loaded_by("sael")  # the usage error: "did you mean encpipe seal?" (tests/test_help.py)


def test_only_a_command_that_prints_json_loads_json(tmp_path):
    """seal, open, keyid and --version print no JSON and do not import json (about a
    millisecond of each start); inspect --json does, and prints it."""
    import json
    import subprocess
    import sys

    for argv in (["--version"], ["seal", "--key-file", "/dev/null"], ["open", "--key-file", "/dev/null"],
                 ["keyid", "--key-file", "/dev/null"]):
        assert "json" not in _loaded_by(*argv), argv
    key, sealed = tmp_path / "key", tmp_path / "sealed"
    key.write_text("5d" * 32 + "\n")
    key.chmod(0o600)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(PACKAGE.parent)}
    subprocess.run([sys.executable, "-m", "encpipe", "seal", "--key-file", str(key), "-o", str(sealed)], input=b"x",
                   check=True, cwd=PACKAGE.parent, env=env)
    assert "json" in _loaded_by("inspect", "--json", str(sealed))
    done = subprocess.run([sys.executable, "-m", "encpipe", "inspect", "--json", str(sealed)], capture_output=True,
                          check=True, cwd=PACKAGE.parent, env=env)
    assert json.loads(done.stdout)["version"] == 2


def test_seal_and_open_of_a_raw_key_load_no_subprocess(tmp_path):
    """seal and open that start no child (no --key-command) do not import subprocess
    (about 2 ms of each start, with cryptography; pycryptodome's backend imports it
    itself); a --key-command still runs."""
    import subprocess
    import sys

    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(PACKAGE.parent), "ENCPIPE_CIPHER": "cryptography"}
    probe = ("import runpy, sys\nsys.argv = ['encpipe', *sys.argv[1:]]\ntry:\n"
             "    runpy.run_module('encpipe', run_name='__main__')\nexcept SystemExit as e:\n"
             "    print(e.code, 'subprocess' in sys.modules, file=sys.stderr)\n")
    key = tmp_path / "key"
    key.write_text("5d" * 32 + "\n")
    key.chmod(0o600)
    sealed = subprocess.run([sys.executable, "-c", probe, "seal", "--key-file", str(key)], input=b"x",
                            capture_output=True, cwd=PACKAGE.parent, env=env)
    assert sealed.stderr.decode().splitlines()[-1] == "0 False"
    opened = subprocess.run([sys.executable, "-c", probe, "open", "--key-command", f"cat {key}"],
                            input=sealed.stdout, capture_output=True, cwd=PACKAGE.parent, env=env)
    assert (opened.stdout, opened.stderr.decode().splitlines()[-1]) == (b"x", "0 True")
    opened = subprocess.run([sys.executable, "-c", probe, "open", "--key-file", str(key)], input=sealed.stdout,
                            capture_output=True, cwd=PACKAGE.parent, env=env)
    assert (opened.stdout, opened.stderr.decode().splitlines()[-1]) == (b"x", "0 False")


def test_a_command_is_parsed_without_its_summary_and_without_textwrap():
    """docopt reads the usage and the options of command_help; parsed without the
    summary line (usage.command_help(parsing=True)), a run does not import textwrap
    (about 0.7 ms of each start), and every option parses, or fails, as with it."""
    import re

    from encpipe.deps import docopt_parser
    from encpipe.usage import COMMANDS, command_help, options_of

    assert "textwrap" not in _loaded_by("keyid", "--key-file", "/dev/null")
    docopt, docopt_exit = docopt_parser()

    def parsed(text, argv):
        try:
            return docopt(text, argv=argv, default_help=False)
        except docopt_exit as e:
            return str(e)

    for command in COMMANDS:
        full, short = command_help(command), command_help(command, parsing=True)
        assert full.endswith(short) and full.count("\n") - short.count("\n") >= 2
        valued = set(re.findall(r"(--?[\w-]+)[ =][A-Z]", short))
        tries = [[command], [command, "FILE"], [command, "--nonsense"]]
        tries += [[command, option, *(["x"] if option in valued else [])] for option in sorted(options_of(command))]
        for argv in tries:
            assert parsed(full, argv) == parsed(short, argv), argv


def test_start_up_loads_no_cipher_for_help_no_pycryptodome_for_inspect_and_no_dataclasses_for_a_script(tmp_path):
    """What start-up spares (the suite starts thousands of processes): `keyid --help`
    loads no cipher module (the command line once took is_pipe from workers, which
    loaded aead, format and textform), `keyid` none of a sealed file's (envelope,
    provenance: commands imports them where used); `inspect` without --verify loads no module of
    pycryptodome's (random bytes are os.urandom, which Crypto.Random gives), nor of
    `cryptography`, nor hmac and hashlib (OpenSSL's libcrypto, 2.5 ms: provenance and
    primitives import them where a key is used); a file unsigned, seal, open and inspect
    load no encpipe.signing (provenance imports it for a trailer's signatures); seal and
    open of small chunks with `cryptography` load AESGCM but not its ciphers package
    (every cipher and mode: 7 ms; imported for a chunk that goes by pieces, over 8 MiB); a script
    listing a directory loads neither dataclasses nor inspect (about 8 ms:
    records.record makes the backup modules' records), nor the remote store, the
    PostgreSQL client or random (subprocess, json, shutil: 6 ms)."""
    import os
    import subprocess
    import sys

    loaded = _loaded_by("keyid", "--help")
    assert "encpipe.cli" in loaded and loaded.isdisjoint({"encpipe.aead", "encpipe.workers", "encpipe.commands"})
    loaded = _loaded_by("keyid", "--key-file", "/dev/null")  # keys only: no sealed file's modules
    assert "encpipe.keys" in loaded and loaded.isdisjoint({"encpipe.envelope", "encpipe.provenance", "encpipe.stream"})
    sealed = tmp_path / "f.enc"
    key = "ab" * 32
    key_file = str(tmp_path / "k.key")
    with open(os.open(key_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
        f.write(key + "\n")
    subprocess.run([sys.executable, "-m", "encpipe", "seal"], input=b"x", stdout=sealed.open("wb"), check=True,
                   cwd=PACKAGE.parent, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(PACKAGE.parent),
                                            "ENCPIPE_KEY": key})
    loaded = _loaded_by("inspect", str(sealed))
    assert "encpipe.envelope" in loaded and not {m for m in loaded if m.startswith("Crypto.")}  # the package only
    # no key: neither OpenSSL's hashes (hmac, hashlib: 2.5 ms) nor, unsigned, the signatures' module
    assert loaded.isdisjoint({"encpipe.signing", "hmac", "hashlib", "_hashlib", "base64"}), sorted(loaded)
    assert not {m for m in loaded if m.startswith("cryptography")}
    loaded = _loaded_by("keyid", "--key-file", key_file)
    assert "hmac" in loaded and "encpipe.signing" not in loaded  # a raw key's id is HKDF: no signing key's
    assert not {m for m in loaded if m.startswith("cryptography")}
    for argv in (["seal", "--key-file", key_file], ["open", "--key-file", key_file, str(sealed)]):
        loaded = _loaded_by(*argv, env={"ENCPIPE_CIPHER": "cryptography"}, stdin=b"small")
        assert "cryptography.hazmat.bindings._rust" in loaded, argv
        assert "cryptography.hazmat.primitives.ciphers" not in loaded, argv
        assert loaded.isdisjoint({"encpipe.signing", "encpipe.safefile"}), argv  # unsigned, to standard output
        assert "tempfile" not in loaded, argv  # open FILE's first pass spools with O_TMPFILE itself (spool._unnamed)
        # a key's hex digits and the header's CRC-32 need neither string (a regex compiled at its
        # import) nor zlib: a literal, and binascii's crc32 (a module built into the interpreter)
        assert loaded.isdisjoint({"string", "zlib"}), argv
    probe = ("import io, sys\nfrom encpipe.backup.cli import main\n"
             f"assert main(['list', {str(tmp_path)!r}], stdout=io.BytesIO()) == 0\n"
             "print(' '.join(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         cwd=PACKAGE.parent, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(PACKAGE.parent)}).stdout
    modules = set(out.split())
    assert "encpipe.backup.listing" in modules and modules.isdisjoint(
        {"dataclasses", "inspect", "subprocess", "random", "encpipe.backup.rclonestore", "encpipe.pgprops"})


def test_the_command_line_modules_compile_no_pattern_as_they_load():
    """A run uses few of the regular expressions its modules hold: each is compiled
    where first used (lazyre.Pattern; about 0.1 ms a pattern, 0.6 ms of a seal's start),
    and behaves as re.compile's."""
    import re

    from encpipe import cli, commands, keyargs, lazyre, pgopts, shown, textform, usage, workers
    from encpipe.backup import metrics

    compiled = [(m.__name__, name) for m in (cli, commands, keyargs, metrics, pgopts, shown, textform, usage, workers)
                for name, value in vars(m).items() if isinstance(value, re.Pattern)]
    assert compiled == []
    pattern = lazyre.Pattern(r"(a)(b)?", re.I)
    assert pattern.fullmatch("A").groups() == ("A", None) and pattern.split("xAby") == ["x", "A", "b", "y"]
    assert pattern.pattern == "(a)(b)?" and pattern.flags & re.I and pattern.fullmatch("c") is None


# Runs encpipe in this process with an audit hook that notes each module a thread other
# than the main one imports (written at exit to the descriptor REPORT_FD names).
_THREAD_IMPORTS = """
import os, runpy, sys, threading
seen = []
def hook(event, args):
    if event == "import" and threading.current_thread() is not threading.main_thread():
        seen.append(args[0])
sys.addaudithook(hook)
try:
    runpy.run_module("encpipe", run_name="__main__", alter_sys=True)
finally:
    os.write(int(os.environ.pop("REPORT_FD")), " ".join(seen).encode())
"""


def test_no_worker_thread_imports_a_module(tmp_path):
    """An import in a worker thread met memory exhaustion in two threads at once (16 MiB
    chunks on 4 threads under a 130 MiB address space): importlib's module lock spun for
    ever, and encpipe with it, SIGTERM unheeded. The cipher's pieces (cryptography 51 and
    later, for a chunk over 64 KiB then, over 8 MiB now) were imported by the first chunk that needed them; now
    before the threads start."""
    import subprocess
    import sys

    plaintext = os.urandom(1 << 20) * 40
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(PACKAGE.parent), "ENCPIPE_KEY": "3e" * 32}
    sealed = tmp_path / "sealed"
    for argv, stdin in [(["seal", "-o", str(sealed), "--chunk-size", "16M", "--threads", "4"], plaintext),
                        (["open", str(sealed), "--threads", "4"], b""),
                        (["inspect", "--verify", str(sealed), "--threads", "4"], b"")]:
        read, write = os.pipe()
        with os.fdopen(read, "rb") as report:
            done = subprocess.run([sys.executable, "-c", _THREAD_IMPORTS, *argv], input=stdin, capture_output=True,
                                  env={**env, "REPORT_FD": str(write)}, pass_fds=(write,))
            os.close(write)
            assert done.returncode == 0, done.stderr
            assert report.read() == b"", argv
