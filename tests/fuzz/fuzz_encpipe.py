"""Fuzz targets for encpipe's untrusted-input paths, with atheris (libFuzzer).

    python3 tests/fuzz/fuzz_encpipe.py TARGET [libFuzzer options] [CORPUS_DIR...]
    python3 tests/fuzz/fuzz_encpipe.py --seeds TARGET DIR    # write seed inputs to DIR
    python3 tests/fuzz/fuzz_encpipe.py --check TARGET FILE...  # run inputs once, no atheris

Targets (TARGETS below): header, slot, open, open-keyring, inspect,
inspect-verify and, once encpipe/legacy.py exists, legacy. Each one feeds
the input to encpipe and checks the contract; anything else is a crash:

- the parsers (header, slot) may only raise encpipe's own errors;
- `cli.main` may only return a documented exit status (70 is "internal
  error", a bug), must print exactly one `encpipe: error:` line (plus an
  optional `encpipe: hint:` line) on failure and nothing on success, never a
  traceback; what `open` writes must be a prefix of a plaintext sealed by the
  seed generator (nobody without the key can make encpipe emit anything else),
  and failing `inspect` writes nothing.

`tests/fuzz/run` drives all targets for a given time; the test suite replays
tests/fuzz/regressions/ through `check_input` (tests/test_hostile.py).
This module imports without atheris, so the checks are shared with the tests.
"""

import hashlib
import importlib
import io
import json
import os
import random
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
VECTORS = os.path.join(ROOT, "tests", "vectors")
REGRESSIONS = os.path.join(HERE, "regressions")

# Fixed secrets of the fuzzer's own seed files (public: they protect nothing).
KEY_HEX = hashlib.sha256(b"encpipe fuzz raw key").hexdigest()
IDENTITY_SECRET = hashlib.sha256(b"encpipe fuzz x25519 identity").digest()
PASSPHRASE = b"encpipe fuzz passphrase"

DOCUMENTED_EXITS = {0, 64, 65, 66, 74, 77, 78}  # 70 is documented too, as "a bug"
ERROR_PREFIX = "encpipe: error: "
HINT_PREFIX = "encpipe: hint: "
WARNING_PREFIX = "encpipe: warning: "
WHO_MADE_IT = ("a version 1 file: ", "opened with an x25519 identity: ")

# Scrypt slots cheaper than this are really run (memory 128*N*r, work N*r*p).
CHEAP_SCRYPT_MEMORY = 16 << 20
CHEAP_SCRYPT_WORK = 1 << 16


class ContractViolation(AssertionError):
    """encpipe broke its documented contract on this input."""


# --- deterministic plaintexts: anything `open` prints must be a prefix of one -------


def _plaintext(n, seed):
    return random.Random(seed).randbytes(n)


# (name, plaintext length, chunk_log2, slot kinds); see make_seed_files.
SEED_SPECS = [
    ("empty", 0, 14, ("raw",)),
    ("small", 100, 20, ("raw",)),
    ("one-chunk", 1 << 14, 14, ("raw",)),
    ("two-chunks", (1 << 14) + 1, 14, ("raw",)),
    ("three-chunks-all-slots", 40000, 14, ("raw", "x25519", "passphrase", "unknown")),
    ("x25519", 1000, 16, ("x25519",)),
    ("passphrase", 1000, 14, ("passphrase",)),
    ("many-slots", 500, 14, ("other-raw",) * 6 + ("raw",)),
]
PLAINTEXTS = {name: _plaintext(n, name) for name, n, _, _ in SEED_SPECS}


def _lazy():
    """encpipe's modules; imported on first use so atheris can instrument them first."""
    from encpipe import cli, commands, envelope, errors, slots, stream, x25519
    from encpipe import format as fmt

    return cli, commands, envelope, errors, fmt, slots, stream, x25519


def legacy_available():
    return os.path.exists(os.path.join(ROOT, "encpipe", "legacy.py"))


def identities():
    """The secrets the fuzzer's seed files are sealed to, as encpipe objects."""
    _, _, _, _, _, slots, _, x25519 = _lazy()
    return (
        slots.RawKey(bytes.fromhex(KEY_HEX)),
        x25519.X25519Identity(IDENTITY_SECRET),
        slots.Passphrase(PASSPHRASE, log2_n=10, r=8, p=1),
    )


def seal_bytes(plaintext, chunk_log2, kinds):
    """A sealed file, made with the library (not the CLI) so any slot mix is possible."""
    _, _, envelope, _, fmt, slots, _, _ = _lazy()
    raw, ident, passphrase = identities()
    makers = {
        "raw": lambda: raw,
        "x25519": ident.recipient,
        "passphrase": lambda: passphrase,
        "other-raw": lambda: slots.RawKey(os.urandom(32)),
    }
    recipients, unknown = [], []
    for kind in kinds:
        if kind == "unknown":
            unknown.append(fmt.SlotRecord(200, b"\x00" * 17))
        else:
            recipients.append(makers[kind]())
    out = io.BytesIO()
    file_key = os.urandom(32)
    header = envelope.build_header(file_key, [r.wrap(file_key) for r in recipients] + unknown, chunk_log2, version=1)
    out.write(header.encode())
    from encpipe.primitives import payload_key
    from encpipe.stream import seal_payload

    seal_payload(io.BytesIO(plaintext), out, payload_key(file_key, header), header.chunk_size)
    return out.getvalue()


def make_seed_files():
    """{name: sealed bytes} for every SEED_SPECS entry."""
    return {name: seal_bytes(PLAINTEXTS[name], log2, kinds) for name, _, log2, kinds in SEED_SPECS}


def vector_inputs(legacy=False):
    """The raw file bytes of the test vectors, as extra seeds.

    tests/vectors/*.vec are a text header, a blank line, then the file;
    tests/vectors/legacy/*.enc are files of the previous tool."""
    found = []
    directory = os.path.join(VECTORS, "legacy") if legacy else VECTORS
    if not os.path.isdir(directory):
        return found
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if not os.path.isfile(path) or os.path.getsize(path) > (1 << 20):
            continue
        with open(path, "rb") as f:
            data = f.read()
        if name.endswith(".vec") and not legacy:
            found.append(data.split(b"\n\n", 1)[1] if b"\n\n" in data else data)
        elif name.endswith(".enc") and legacy:
            found.append(data)
    return found


def slot_seeds(files):
    """Slot target inputs: kind byte || body, from every slot of the sealed seed files."""
    _, _, _, errors, fmt, _, _, _ = _lazy()
    seeds = []
    for data in files:
        try:
            header = fmt.read_header(io.BytesIO(data))
        except errors.EncpipeError:
            continue
        seeds += [bytes([s.kind]) + s.body for s in header.slots]
    return seeds


def write_seeds(target, directory):
    os.makedirs(directory, exist_ok=True)
    files = list(make_seed_files().values()) + vector_inputs()
    if target == "legacy":
        files = legacy_seed_files() + vector_inputs(legacy=True) + [f[:200] for f in files[:2]]
    elif target == "slot":
        files = slot_seeds(files)
    elif target == "header":
        files = files + [f[:400] for f in files]
    for data in files:
        name = hashlib.sha1(data).hexdigest()
        with open(os.path.join(directory, name), "wb") as f:
            f.write(data)
    return len(files)


# --- contract checks ------------------------------------------------------------------


def check_stderr(rc, err):
    if "Traceback" in err or "Exception ignored" in err:
        raise ContractViolation(f"traceback on stderr (status {rc}):\n{err}")
    lines = err.splitlines()
    if rc == 0:  # at most a warning that no one vouches for who made the file (a v1 or x25519 file)
        if err and (not lines[0].startswith(tuple(WARNING_PREFIX + w for w in WHO_MADE_IT)) or len(lines) > 2
                    or not lines[-1].startswith((WARNING_PREFIX, HINT_PREFIX))):
            raise ContractViolation(f"status 0 but stderr: {err!r}")
        return
    if not lines or not 1 <= len(lines) <= 2 or not lines[0].startswith(ERROR_PREFIX):
        raise ContractViolation(f"status {rc}: stderr is not one error line (+ hint): {err!r}")
    if len(lines) == 2 and not lines[1].startswith(HINT_PREFIX):
        raise ContractViolation(f"status {rc}: second stderr line is not a hint: {err!r}")
    if not err.endswith("\n"):
        raise ContractViolation(f"status {rc}: stderr does not end with a newline: {err!r}")


def check_status(rc):
    if rc not in DOCUMENTED_EXITS:
        raise ContractViolation(f"exit status {rc} is not a documented one")


def check_open_output(rc, out, plaintexts=None):
    """What `open` printed must be (a prefix of, on failure) a plaintext we sealed."""
    candidates = list(PLAINTEXTS.values() if plaintexts is None else plaintexts)
    if rc == 0:
        if out not in candidates:
            raise ContractViolation(f"status 0 with {len(out)} bytes that are no sealed plaintext")
    elif out and not any(p.startswith(out) for p in candidates):
        raise ContractViolation(f"status {rc}: {len(out)} output bytes that are no plaintext prefix")


def check_inspect_output(rc, out, json_output, legacy=False):
    if rc == 0:
        if json_output:
            report = json.loads(out.decode("utf-8"))
            if report.get("format") != ("legacy" if legacy else "encpipe"):
                raise ContractViolation(f"inspect --json printed an odd report: {report!r}")
            if not legacy and not isinstance(report.get("slots"), list):
                raise ContractViolation(f"inspect --json printed an odd report: {report!r}")
        elif not out.startswith(b"format: "):
            raise ContractViolation(f"inspect printed an odd report: {out[:80]!r}")
    elif out:
        raise ContractViolation(f"inspect failed with status {rc} but wrote {len(out)} bytes to stdout")


class Pipe(io.RawIOBase):
    """An in-memory input that, like a pipe, cannot seek."""

    def __init__(self, data):
        self._data = io.BytesIO(data)

    def readable(self):
        return True

    def readinto(self, buffer):
        return self._data.readinto(buffer)


def run_main(argv, data, env, pipe=False):
    cli = _lazy()[0]
    stdout, stderr = io.BytesIO(), io.StringIO()
    stdin = io.BufferedReader(Pipe(data)) if pipe else io.BytesIO(data)
    rc = cli.main(argv, stdin=stdin, stdout=stdout, stderr=stderr, env=env)
    return rc, stdout.getvalue(), stderr.getvalue()


_SCRATCH = None


def scratch_dir():
    """A private directory holding the fuzzer's key and passphrase files (mode 0600)."""
    global _SCRATCH
    if _SCRATCH is None:
        _SCRATCH = tempfile.mkdtemp(prefix="encpipe-fuzz-")
        ident = identities()[1]
        for name, text in (("keyring", f"# fuzz keys\n{KEY_HEX}\n{ident}\n"), ("passphrase", PASSPHRASE.decode())):
            fd = os.open(os.path.join(_SCRATCH, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(text)
    return _SCRATCH


def _cheap_passphrase_slots_only(data):
    """False when the input has a passphrase slot too costly to run scrypt on in a fuzz loop."""
    _, _, envelope, errors, _, slots, _, _ = _lazy()
    try:
        sealed = envelope.read_header(io.BytesIO(data))
    except errors.EncpipeError:
        return True
    return not any(isinstance(slot, slots.ScryptSlot) and _too_costly_to_fuzz(slot) for slot in sealed.slots)


def _too_costly_to_fuzz(slot):
    n = 1 << min(slot.log2_n, 64)
    return 128 * n * slot.r > CHEAP_SCRYPT_MEMORY or n * slot.r * slot.p > CHEAP_SCRYPT_WORK


def target_header(data):
    _, _, envelope, errors, fmt, _, _, _ = _lazy()
    try:
        header = fmt.read_header(io.BytesIO(data))
    except errors.InvalidStream:
        header = None
    if header is not None:
        raw = data[: header.size]
        if header.encode() != raw:
            raise ContractViolation("a header that parsed does not re-encode to the same bytes")
    try:
        sealed = envelope.read_header(io.BytesIO(data))
    except errors.InvalidStream:
        return  # slot decoding may add a failure: a known kind with a wrong body length
    if header is None:
        raise ContractViolation("envelope.read_header accepted what format.read_header refused")
    for slot in sealed.slots:
        envelope.slot_label(slot.describe())
    envelope.needed_keys_hint(sealed.slots)


def target_slot(data):
    if not data:
        return
    _, _, envelope, errors, fmt, slots, _, x25519 = _lazy()
    record = fmt.SlotRecord(data[0], bytes(data[1:]))
    try:
        slot = envelope.decode_slot(record)
    except errors.InvalidStream:
        return
    envelope.slot_label(slot.describe())
    if not isinstance(slot, envelope.UnknownSlot) and slot.encode() != record:
        raise ContractViolation("a decoded slot does not re-encode to the same record")
    raw, ident, passphrase = identities()
    for identity in (raw, ident, passphrase):
        identity.can_try(slot)
    try:
        if isinstance(slot, slots.RawKeySlot):
            result = raw.unwrap(slot)
        elif isinstance(slot, x25519.X25519Slot):
            result = ident.unwrap(slot)
        elif isinstance(slot, slots.ScryptSlot):
            slot.check_cost()
            if _too_costly_to_fuzz(slot):
                return
            result = passphrase.unwrap(slot)
        else:
            return
    except errors.InvalidStream:
        return
    if result is not None and len(result) != 32:
        raise ContractViolation(f"unwrap returned {len(result)} bytes")


def _main_target(argv, env=None, kind="open", json_output=False):
    def target(data):
        rc, out, err = run_main(list(argv), data, dict(env or {}))
        check_status(rc)
        check_stderr(rc, err)
        if kind == "open":
            check_open_output(rc, out)
        else:
            check_inspect_output(rc, out, json_output)

    return target


def target_open_keyring(data):
    scratch = scratch_dir()
    argv = ["open", "--threads", "1", "--key-file", os.path.join(scratch, "keyring")]
    if _cheap_passphrase_slots_only(data):
        argv += ["--passphrase-file", os.path.join(scratch, "passphrase")]
    rc, out, err = run_main(argv, data, {})
    check_status(rc)
    check_stderr(rc, err)
    check_open_output(rc, out)


def target_legacy(data):
    """`open --legacy` and `inspect --legacy`: the previous tool's files are untrusted too.

    The old format has one tag over the whole file, so `open --legacy` must write
    nothing at all unless the whole input authenticated."""
    env = {"ENCPIPE_KEY": KEY_HEX}
    pipe = bool(data) and data[-1] & 1 == 1  # a file or a pipe: both are spooled
    for argv in (["open", "--legacy"], ["inspect", "--legacy", "--json"], ["inspect", "--legacy", "--verify"]):
        rc, out, err = run_main(argv, data, env, pipe=pipe)
        check_status(rc)
        check_stderr(rc, err)
        if argv[0] == "inspect":
            check_inspect_output(rc, out, "--json" in argv, legacy=True)
        elif rc == 0 and out not in PLAINTEXTS.values():
            raise ContractViolation(f"open --legacy succeeded with {len(out)} bytes that are no sealed plaintext")
        elif rc != 0 and out:
            raise ContractViolation(f"open --legacy failed with status {rc} after writing {len(out)} bytes")


def legacy_seed_files():
    """Files in the previous tool's format, sealed with the fuzzer's raw key."""
    from encpipe.legacy import seal_legacy

    files = []
    for name in ("empty", "small", "two-chunks"):
        out = io.BytesIO()
        seal_legacy(io.BytesIO(PLAINTEXTS[name]), out, bytes.fromhex(KEY_HEX))
        files.append(out.getvalue())
    return files


_ENV_KEY = {"ENCPIPE_KEY": KEY_HEX}
TARGETS = {
    "header": target_header,
    "slot": target_slot,
    "open": _main_target(["open"], _ENV_KEY),
    "open-keyring": target_open_keyring,
    "inspect": _main_target(["inspect"], kind="inspect"),
    "inspect-json": _main_target(["inspect", "--json"], kind="inspect", json_output=True),
    "inspect-verify": _main_target(["inspect", "--json", "--verify"], _ENV_KEY, kind="inspect", json_output=True),
    "legacy": target_legacy,
}
# What `tests/fuzz/run` runs by default (inspect-json is covered by inspect-verify's header path).
DEFAULT_TARGETS = ["header", "slot", "open", "open-keyring", "inspect", "inspect-verify", "legacy"]


def check_input(target, data):
    """Run one input through a target; raises ContractViolation (or the escaping error)."""
    TARGETS[target](data)


def regression_files():
    """(target, path) for every kept crashing input: files named TARGET-anything."""
    found = []
    if os.path.isdir(REGRESSIONS):
        for name in sorted(os.listdir(REGRESSIONS)):
            target = next((t for t in sorted(TARGETS, key=len, reverse=True) if name.startswith(t + "-")), None)
            if target and not name.endswith((".md", ".txt")):
                found.append((target, os.path.join(REGRESSIONS, name)))
    return found


def _memoize_docopt():
    """Parse each (fixed) command line once: docopt's parse takes longer than most inputs."""
    import copy

    from encpipe import cli

    (parse, docopt_exit), parsed = cli.docopt_parser(), {}

    def cached(doc, argv=None, **kwargs):
        key = tuple(argv or ())
        if key not in parsed:
            parsed[key] = parse(doc, argv=argv, **kwargs)
        result = parsed[key]  # docopt's dict subclass, copied by its items: Python 3.9's deepcopy fails on it
        return type(result)((name, copy.deepcopy(value)) for name, value in result.items())

    cli.docopt_parser = lambda: (cached, docopt_exit)


def _fuzz(target, libfuzzer_args):
    import atheris

    with atheris.instrument_imports(include=["encpipe"]):
        for name in ("cli", "commands", "envelope", "keys", "progress", "x25519"):
            importlib.import_module("encpipe." + name)
        if legacy_available():
            importlib.import_module("encpipe.legacy")
    _memoize_docopt()
    atheris.Setup([sys.argv[0]] + libfuzzer_args, TARGETS[target])
    atheris.Fuzz()


def main(argv):
    if len(argv) >= 3 and argv[0] == "--seeds":
        print(write_seeds(argv[1], argv[2]))
        return 0
    if len(argv) >= 2 and argv[0] == "--check":
        failures = 0
        for path in argv[2:]:
            with open(path, "rb") as f:
                data = f.read()
            try:
                check_input(argv[1], data)
                print(f"ok    {path}")
            except Exception as e:  # report every kind of failure, keep going
                failures += 1
                print(f"FAIL  {path}: {type(e).__name__}: {e}")
        return 1 if failures else 0
    if not argv or argv[0] not in TARGETS:
        print(__doc__, file=sys.stderr)
        print("targets: " + " ".join(TARGETS), file=sys.stderr)
        return 2
    if argv[0] == "legacy" and not legacy_available():
        print("encpipe/legacy.py does not exist yet: nothing to fuzz", file=sys.stderr)
        return 0
    _fuzz(argv[0], argv[1:])
    return 0


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    raise SystemExit(main(sys.argv[1:]))
