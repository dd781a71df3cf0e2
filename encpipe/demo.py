"""The tours of scripts/encpipe-demo, run once encpipe can be imported.

`offline`: an embedded sample dump through seal, inspect, open, rewrap,
inspect --verify, a tampered copy, and a signed file next to a forgery sealed
to the same public key, in a temporary directory; the sample goes through
pipes, never to disk. `postgres`: a throwaway PostgreSQL cluster, a sample
database backed up (signed) with encpipe-backup, listed, verified, restored with
encpipe-restore --signer-file and compared, and a forged backup refused. Every
step prints the command it runs.
"""

import errno
import glob
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile

from .childenv import child_env
from .cli import python_module

PROG = "encpipe-demo"
ENCPIPE = python_module("encpipe")  # never a module of the working directory's
MARKER = "DEMO-SECRET-CARD"
PG_HINT = (f"{PROG}: hint: for the backup, list, verify and restore tour, install the PostgreSQL server "
           "(apt-get install postgresql) or set PG_BINDIR to its bin directory")
ONLINE_HINT = f"{PROG}: hint: for the backup, list, verify and restore tour, run {PROG} without --offline"


FORGED = b"DROP TABLE customers;\n"


class DemoFailed(Exception):
    def __init__(self, message, hint=None):
        super().__init__(message)
        self.hint = hint


def tool_env():
    """The environment of every child of the tour: ours less every secret
    (childenv.child_env). None needs one: encpipe and the scripts are given the
    demo's key files, the throwaway server trusts its socket's clients, and
    nothing runs a key command or rclone."""
    return child_env(os.environ)


def sample_dump(rows=2000):
    """A small pg_dump-like SQL text with a recognisable secret on every row."""
    lines = ["-- PostgreSQL database dump (encpipe-demo sample)", "",
             "CREATE TABLE public.customers (id integer PRIMARY KEY, name text, card text);", "",
             "COPY public.customers (id, name, card) FROM stdin;"]
    lines += [f"{i}\tCustomer {i}\t{MARKER}-4111-{i:04d}" for i in range(1, rows + 1)]
    return ("\n".join(lines + ["\\.", "", "-- PostgreSQL database dump complete", ""])).encode()


def step(text):
    print(f"\n==> {text}", flush=True)


def tool(argv, **kwargs):
    """subprocess.run of `argv` with tool_env(); one that cannot be started is a
    DemoFailed: its OSError was said `cannot write output`, 74 (an encpipe-list whose
    #! line names a python under a path with a space, which the kernel cannot run)."""
    try:
        return subprocess.run(argv, env=tool_env(), **kwargs)
    except OSError as e:
        from .shown import printable

        there = e.errno == errno.ENOENT and shutil.which(argv[0])  # the interpreter of its #! line is not
        raise DemoFailed(f"cannot run {printable(argv[0])}: {e.strerror or e}",
                         hint=f"the interpreter on the #! line of {printable(there)} cannot be run" if there
                         else None) from None


def run(argv, *, stdin=None, expect=0, show=None, capture=False):
    """Run `argv` (printed first as `show` or itself); its status must be `expect`."""
    shown = ["encpipe", *argv[len(ENCPIPE):]] if argv[: len(ENCPIPE)] == ENCPIPE else argv
    print("$ " + (show or shlex.join([os.path.basename(shown[0]), *shown[1:]])), flush=True)
    done = tool(argv, input=stdin, stdout=subprocess.PIPE if capture else None)
    if done.returncode != expect:
        raise DemoFailed(f"{shlex.join(shown)} exited {done.returncode}, expected {expect}")
    if expect:
        print(f"(exit status {expect}, as expected)", flush=True)
    return done.stdout


def offline(base):
    """seal, inspect, open, rewrap, verify and tamper detection without a database."""
    dump, sealed = sample_dump(), f"{base}/shop.sql.enc"
    os.chdir(base)
    step(f"Making two keys in {base}")
    run([*ENCPIPE, "keygen", "-o", "demo.key"])
    run([*ENCPIPE, "keygen", "-o", "new.key"])
    step(f"Sealing a sample dump ({len(dump)} bytes, from memory through a pipe)")
    run([*ENCPIPE, "seal", "--key-file", "demo.key", "-o", "shop.sql.enc"], stdin=dump,
        show="sample-dump | encpipe seal --key-file demo.key -o shop.sql.enc")
    step("Inspecting the header (no key needed; nothing is authenticated)")
    run([*ENCPIPE, "inspect", "shop.sql.enc"])
    step("Opening it again")
    opened = run([*ENCPIPE, "open", "--key-file", "demo.key", "shop.sql.enc"], capture=True)
    if opened != dump:
        raise DemoFailed("the opened dump differs from the sample")
    print(f"identical to the sample: {len(opened)} bytes")
    step("Rewrapping for a new key: the header changes, the payload is copied")
    run([*ENCPIPE, "rewrap", "--in-place", "shop.sql.enc", "--key-file", "demo.key", "--replace",
         "--add-key-file", "new.key"])
    print("the old key no longer opens it:", flush=True)
    run([*ENCPIPE, "open", "--key-file", "demo.key", "shop.sql.enc"], expect=77, capture=True)
    step("Verifying every chunk with the new key")
    run([*ENCPIPE, "inspect", "--verify", "--key-file", "new.key", "shop.sql.enc"])
    step("Flipping one bit of a copy: nothing comes out, exit status 65")
    with open(sealed, "rb") as f:
        original = f.read()
    data = bytearray(original)
    data[len(data) // 2] ^= 1
    with open(f"{base}/tampered.enc", "wb") as f:
        f.write(data)
    out = run([*ENCPIPE, "open", "--key-file", "new.key", "--verify-first", "tampered.enc"], expect=65, capture=True)
    print(f"bytes written: {len(out)}")
    step(f"Looking for {MARKER} in the sample and in the sealed file")
    print(f"sample: {dump.count(MARKER.encode())} times; shop.sql.enc: {original.count(MARKER.encode())} times")
    if MARKER.encode() in original:
        raise DemoFailed("the sealed file contains readable data")
    signed_and_forged(dump)


def make_signing_key():
    """demo.sign (secret) and demo.verify (its verify key, for --signer-file)."""
    step("Making a signing key: a backup can then show who made it")
    verify = run([*ENCPIPE, "keygen", "--sign", "-o", "demo.sign"], capture=True,
                 show="encpipe keygen --sign -o demo.sign > demo.verify")
    with open("demo.verify", "wb") as f:
        f.write(verify)
    print(verify.decode().strip(), flush=True)


def signed_and_forged(dump):
    """A file sealed to a public key and signed opens with --signer; one that anybody
    with the public key made (same recipient, no signature) is refused with 67."""
    step("Sealing to a public key (a backup host holding no secret)")
    public = run([*ENCPIPE, "keygen", "--x25519", "-o", "demo.id"], capture=True,
                 show="encpipe keygen --x25519 -o demo.id > demo.pub")
    with open("demo.pub", "wb") as f:
        f.write(public)
    make_signing_key()
    run([*ENCPIPE, "seal", "--recipient-file", "demo.pub", "--sign-key", "demo.sign", "-o", "signed.enc"],
        stdin=dump, show="sample-dump | encpipe seal --recipient-file demo.pub --sign-key demo.sign -o signed.enc")
    opened = run([*ENCPIPE, "open", "--identity", "demo.id", "--signer-file", "demo.verify", "signed.enc"],
                 capture=True)
    if opened != dump:
        raise DemoFailed("the signed file does not open to the sample")
    print(f"signed by demo.sign, identical to the sample: {len(opened)} bytes")
    step("A forgery: anybody with demo.pub seals another dump to it; --signer refuses it (67), writes nothing")
    run([*ENCPIPE, "seal", "--recipient-file", "demo.pub", "-o", "forged.enc"], stdin=FORGED,
        show="echo 'DROP TABLE customers;' | encpipe seal --recipient-file demo.pub -o forged.enc")
    out = run([*ENCPIPE, "open", "--identity", "demo.id", "--signer-file", "demo.verify", "forged.enc"], expect=67,
              capture=True)
    print(f"bytes written: {len(out)}")


def find_bindir():
    """The PostgreSQL server binaries: PG_BINDIR, pg_config, initdb on PATH, /usr/lib/postgresql/*/bin."""
    candidates = []
    if "PG_BINDIR" in os.environ:
        candidates.append(os.environ["PG_BINDIR"])
    else:
        if shutil.which("pg_config"):
            done = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, env=tool_env())
            candidates.append(done.stdout.strip())
        if shutil.which("initdb"):
            candidates.append(os.path.dirname(os.path.realpath(shutil.which("initdb"))))
        versions = glob.glob("/usr/lib/postgresql/*/bin")
        candidates += sorted(versions, key=lambda d: [int(p) if p.isdigit() else 0 for p in d.split("/")], reverse=True)
    for directory in candidates:
        if directory and all(os.access(os.path.join(directory, b), os.X_OK) for b in ("initdb", "pg_ctl")):
            return directory
    return None


class Cluster:
    """A throwaway server in `base`/pg, as the postgres user (or nobody) when we are root."""

    def __init__(self, base, bindir):
        self.dir, self.bindir, self.user = f"{base}/pg", bindir, None
        os.mkdir(self.dir, 0o700)
        if os.geteuid() == 0:
            import pwd

            self.user = "postgres" if _has_user("postgres") else "nobody"
            os.chmod(base, 0o711)
            os.chown(self.dir, pwd.getpwnam(self.user).pw_uid, -1)
            reach = ["runuser", "-u", self.user, "--", "/bin/sh", "-c", 'test -w "$1"', "sh", self.dir]
            if tool(reach).returncode:
                from .shown import printable

                raise DemoFailed(f"the server would run as user {self.user}, who cannot reach "
                                 f"{printable(os.path.dirname(base))}",
                                 hint="set TMPDIR to a directory every user can pass through, such as TMPDIR=/tmp")

    def server(self, *argv, alone=False):
        """`alone`: in a session of its own, out of reach of a signal to the terminal's process group."""
        prefix = ["runuser", "-u", self.user, "--"] if self.user else []
        tool([*prefix, os.path.join(self.bindir, argv[0]), *argv[1:]], check=True, stdout=subprocess.DEVNULL,
             start_new_session=alone)

    def start(self):
        self.server("initdb", "-D", f"{self.dir}/data", "--username=postgres", "--auth=trust", "--encoding=UTF8",
                    "--locale=C", "--no-sync")
        with open(f"{self.dir}/data/postgresql.conf", "a") as conf:
            conf.write(f"listen_addresses = ''\nunix_socket_directories = '{self.dir}'\nport = 5432\nfsync = off\n")
        self.server("pg_ctl", "start", "-s", "-w", "-D", f"{self.dir}/data", "-l", f"{self.dir}/server.log")
        for name in ("PGSERVICE", "PGHOSTADDR", "PGPASSWORD", "PGPASSFILE", "PGOPTIONS", "ENCPIPE_KEY",
                     "ENCPIPE_PASSPHRASE"):
            os.environ.pop(name, None)
        os.environ.update(PGHOST=self.dir, PGPORT="5432", PGUSER="postgres", PGDATABASE="postgres",
                          PATH=f"{self.bindir}:{os.environ['PATH']}")

    def stop(self):
        """A second signal (Ctrl-C again, SIGHUP passed on by the shell) waits for the stop's end."""
        from .sigdefer import held

        with held():
            if os.path.exists(f"{self.dir}/data/postmaster.pid"):
                try:
                    self.server("pg_ctl", "stop", "-s", "-w", "-m", "fast", "-D", f"{self.dir}/data", alone=True)
                except (subprocess.CalledProcessError, DemoFailed):
                    pass


def _has_user(name):
    import pwd

    try:
        return bool(pwd.getpwnam(name))
    except KeyError:
        return False


def _comparable_dump(db):
    """pg_dump of `db` without psql's per-dump random \\restrict key lines."""
    text = tool(["pg_dump", db], capture_output=True, check=True).stdout
    return b"\n".join(line for line in text.split(b"\n") if not line.startswith((b"\\restrict ", b"\\unrestrict ")))


def postgres(base, bindir):
    """The backup, list, verify and restore tour against a throwaway cluster."""
    names = ("encpipe-backup", "encpipe-restore", "encpipe-list", "encpipe-verify")
    # The scripts beside encpipe-demo (ENCPIPE_DEMO_SCRIPTS) first: a Python run
    # through a shim (pyenv) may have put an installed copy first on PATH.
    search = os.pathsep.join(filter(None, (os.environ.get("ENCPIPE_DEMO_SCRIPTS"), os.environ.get("PATH"))))
    tools = {name: shutil.which(name, path=search) for name in names}
    if not (tools["encpipe-backup"] and tools["encpipe-restore"]):
        raise DemoFailed("encpipe-backup and encpipe-restore not found")
    os.chdir(base)
    step(f"Starting a throwaway PostgreSQL server in {base}")
    cluster = Cluster(base, bindir)
    try:
        cluster.start()
        _postgres_steps(tools)
    finally:
        cluster.stop()


def _postgres_steps(tools):
    run(["psql", "-X", "-q", "-c", "CREATE DATABASE shop"])
    run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "shop", "-c", f"""
        CREATE TABLE customers (id serial PRIMARY KEY, name text, card text);
        INSERT INTO customers (name, card) SELECT 'Customer ' || g, '{MARKER}-4111-' || lpad(g::text, 4, '0')
          FROM generate_series(1, 2000) AS g;
        CREATE TABLE orders (id serial PRIMARY KEY, customer int REFERENCES customers, total numeric(10, 2), note text);
        INSERT INTO orders (customer, total, note) SELECT 1 + g % 2000, g * 1.25, E'gift wrap\\tplease, ß 日本 🐘'
          FROM generate_series(1, 5000) AS g;"""], show="psql -d shop -c 'CREATE TABLE customers ...; INSERT ...'")
    step("Making a key")
    run([*ENCPIPE, "keygen", "-o", "demo.key"])
    make_signing_key()
    step("Backing up, signed, as plain SQL and in pg_dump's custom format")
    backup = [tools["encpipe-backup"], "--dir", "backups", "--key-file", "demo.key", "--sign-key", "demo.sign"]
    run([*backup, "shop"])
    run([*backup, "--format", "custom", "shop"])
    sealed = sorted(glob.glob("backups/shop_*Z.sql*.enc"))[0]
    if tools["encpipe-list"]:
        step("Listing the backups (names and headers only, no key)")
        run([tools["encpipe-list"], "--dir", "backups"])
    if tools["encpipe-verify"]:
        step("Verifying every backup and its signature")
        said = run([tools["encpipe-verify"], "--key-file", "demo.key", "--signer-file", "demo.verify", "--dir",
                    "backups"], capture=True)
        report = json.loads(said)
        print(f'(its JSON report, in short: "ok": {json.dumps(report["ok"])}, {report["verified"]} of '
              f'{report["files"]} files verified)', flush=True)
    step("Inspecting one header (no key needed)")
    run([*ENCPIPE, "inspect", sealed])
    step("Restoring into a new database, all or nothing, if demo.sign signed it")
    restore = [tools["encpipe-restore"], "--key-file", "demo.key", "--signer-file", "demo.verify"]
    run([*restore, sealed, "shop_restored"])
    step("Comparing pg_dump of shop and shop_restored")
    if _comparable_dump("shop") != _comparable_dump("shop_restored"):
        raise DemoFailed("the restored database differs from the original")
    print("identical")
    step(f"Looking for {MARKER} in the plain dump and in the backup")
    plain = tool(["pg_dump", "shop"], capture_output=True, check=True).stdout
    with open(sealed, "rb") as f:
        found = sum(MARKER.encode() in line for line in f)
    plain_lines = sum(MARKER.encode() in line for line in plain.splitlines())
    print(f"pg_dump shop: {plain_lines} lines")
    print(f"{os.path.basename(sealed)}: {found} lines")
    if found:
        raise DemoFailed("the backup contains readable data")
    step("A forgery: a dump sealed with demo.key by someone without demo.sign is refused (67), shop untouched")
    run([*ENCPIPE, "seal", "--key-file", "demo.key", "-o", "forged.sql.enc"], stdin=FORGED,
        show="echo 'DROP TABLE customers;' | encpipe seal --key-file demo.key -o forged.sql.enc")
    run([*restore, "forged.sql.enc", "shop"], expect=67)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    offline_only = argv == ["--offline"]
    if argv and not offline_only:
        from .usage_errors import shown_argument

        print(f"{PROG}: error: unknown argument {shown_argument(argv[0])}\n{PROG}: hint: see {PROG} --help",
              file=sys.stderr)
        return 64
    from .cli import catch_signal

    # A kill, or the terminal closed (SIGHUP), stops the server and removes the
    # directory as Ctrl-C does: the `finally` below runs.
    # A second signal waits for the clean-up (sigdefer.held), Ctrl-C's too.
    catch_signal(signal.SIGINT, signal.default_int_handler)
    catch_signal(signal.SIGTERM, lambda *_: sys.exit(143))
    catch_signal(signal.SIGHUP, lambda *_: sys.exit(129))
    bindir = None if offline_only else find_bindir()
    base = tempfile.mkdtemp(prefix="encpipe-demo.")
    try:
        if bindir:
            postgres(base, bindir)
        else:
            offline(base)
        step(f"Done; removing {base}")
    except DemoFailed as e:
        print(f"{PROG}: error: {e}" + (f"\n{PROG}: hint: {e.hint}" if e.hint else ""), file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as e:  # a server command; what it said came before
        print(f"{PROG}: error: {shlex.join(map(str, e.cmd))} exited {e.returncode}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # encpipe-demo | head: quietly, as encpipe
        from .stdio import discard

        return discard(141)
    except OSError as e:  # the tour's own lines: a full disk, a closed stdout
        from .stdio import discard

        print(f"{PROG}: error: cannot write output: {e.strerror or e}", file=sys.stderr)
        return discard(74)
    finally:
        from .sigdefer import held

        with held():
            os.chdir("/")
            shutil.rmtree(base, ignore_errors=True)
    if not bindir:
        print(ONLINE_HINT if offline_only and find_bindir() else _pg_hint(), file=sys.stderr)
    return 0


def _pg_hint():
    """How to get the PostgreSQL tour: a PG_BINDIR given is the one to fix."""
    if "PG_BINDIR" not in os.environ:
        return PG_HINT
    from .shown import printable

    return (f"{PROG}: hint: PG_BINDIR ({printable(os.environ['PG_BINDIR'])}) holds no initdb and pg_ctl: for the "
            "backup, list, verify and restore tour, set it to the PostgreSQL server's bin directory")


if __name__ == "__main__":
    from .cli import guard_standard_fds

    guard_standard_fds()
    raise SystemExit(main())
