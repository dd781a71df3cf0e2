"""What every measurement needs: the environment, the encpipe command, the
machine's facts, the generated inputs and the peers that are installed."""

import os
import platform
import shutil
import site
import subprocess
import sys
import time

from ..childenv import child_env
from .measure import GNU_TIME, BenchError, command_output, file_digest, human, output_digest, run, write_random

CIPHERS = ("cryptography", "pycryptodome")
PUBLIC_KEY_CIPHER = "cryptography"  # the public-key throughput rows run with the fast library only (report.FAST)

# Single-threaded references: a plain loop over each library's GCM, 1 MiB chunks.
GCM_LOOPS = {
    "pycryptodome": """
from Crypto.Cipher import AES
key, buf, i = bytes(32), memoryview(bytearray(1 << 20)), 0
src, dst = open(0, "rb", buffering=0), open(1, "wb", buffering=0)
while n := src.readinto(buf):
    c = AES.new(key, AES.MODE_GCM, nonce=i.to_bytes(12, "big"))
    c.encrypt(buf[:n], output=buf[:n])
    dst.write(buf[:n]); dst.write(c.digest()); i += 1
""",
    "cryptography": """
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
g, buf, out, i = AESGCM(bytes(32)), memoryview(bytearray(1 << 20)), memoryview(bytearray((1 << 20) + 16)), 0
src, dst = open(0, "rb", buffering=0), open(1, "wb", buffering=0)
while n := src.readinto(buf):  # into another buffer: cryptography 51 refuses an output over its input
    g.encrypt_into(i.to_bytes(12, "big"), buf[:n], None, out[: n + 16])
    dst.write(out[: n + 16]); i += 1
""",
}

# Writes N bytes to stdout, so a large input never exists as a file.
GENERATOR = """
import os, sys
left, block = int(sys.argv[1]), bytes(range(256)) * 4096
while left > 0:
    left -= os.write(1, block[: min(left, len(block))])
"""

def venv_site_packages():
    """This virtual environment's site-packages (none outside one). The bench runs the real
    interpreter its python links to, which does not read the environment's pyvenv.cfg: without
    these on PYTHONPATH it finds pycryptodome and docopt only where that interpreter has them."""
    return site.getsitepackages() if sys.prefix != sys.base_prefix else []


# Runs encpipe from a given directory even when another tree is installed editable.
BOOTSTRAP = """
import runpy, sys
sys.meta_path[:] = [f for f in sys.meta_path if not type(f).__module__.startswith("__editable__")]
sys.path.insert(0, sys.argv.pop(1))
sys.argv[0] = "encpipe"
runpy.run_module("encpipe", run_name="__main__", alter_sys=True)
"""


class Context:
    def __init__(self, opts, work, repo):
        self.opts, self.work, self.repo = opts, work, repo
        self.started = time.perf_counter()
        self.notes, self.sections = [], []
        self.rows, self.startup_rows, self.rss_rows, self.legacy_rows, self.pg_rows = [], [], [], [], None
        self.format_rows = []
        self._x25519 = self.x25519_sealed = self._signing = None
        self.python = os.path.realpath(sys.executable)
        self._drop_secrets()
        self.base_env = self._base_env()
        self.encpipe, self.encpipe_how = self._encpipe_command()  # adds PYTHONPATH to base_env
        self.key = os.urandom(32).hex()
        self.ciphers = [c for c in CIPHERS if c in opts.ciphers]
        if "cryptography" in self.ciphers and command_output([self.python, "-c", "import cryptography"], self.base_env) != "":
            self.notes.append("cryptography is not installed: pycryptodome rows only")
            self.ciphers.remove("cryptography")
        if not self.ciphers:
            raise BenchError("no cipher library to measure")
        self.cores = len(os.sched_getaffinity(0))
        if not GNU_TIME:
            self.notes.append("no GNU /usr/bin/time: peak RSS is an upper bound (os.wait4 counts this script)")
        self.facts = self._facts()

    def say(self, message):
        elapsed = time.perf_counter() - self.started
        print(f"bench: [{elapsed:6.1f} s] {message}", file=sys.stderr, flush=True)

    def path(self, name):
        return os.path.join(self.work, name)

    def _drop_secrets(self):
        """The bench needs no secret of whoever runs it: encpipe gets the bench's own
        key (enc), the libpq clients a throwaway cluster that trusts its socket, the
        peers (age, openssl, gpg) keys of their own. Every secret variable
        (childenv.child_env: encpipe's, PGPASSWORD, RCLONE_..., the cloud's credentials)
        leaves our environment first, so that no child has it, the cluster's server
        and clients (tests/pgcluster.py) included. The rest stays: encpipe runs as
        its users run it."""
        kept = child_env(os.environ)
        dropped = sorted(name for name in os.environ if name not in kept)
        for name in dropped:
            del os.environ[name]
        if dropped:
            self.notes.append(f"not given to any child: {', '.join(dropped)} (secrets; the bench needs none)")

    def _base_env(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("ENCPIPE_")}
        if env.pop("PYTHONUNBUFFERED", None) is not None:
            self.notes.append("PYTHONUNBUFFERED was set: unset for the children, as users run encpipe")
        if env.pop("PYTHONDONTWRITEBYTECODE", None) is not None or sys.dont_write_bytecode:
            env["PYTHONPYCACHEPREFIX"] = self.path("pycache")
            self.notes.append(
                "PYTHONDONTWRITEBYTECODE was set: Python children cache bytecode in the temporary "
                "directory (PYTHONPYCACHEPREFIX), so start-up is measured as for an installed package"
            )
        return env

    def _encpipe_command(self):
        package_dir = self.package_dir = os.path.abspath(self.opts.package_dir or self.repo)
        wanted = os.path.join(package_dir, "encpipe", "__init__.py")
        if not os.path.exists(wanted):
            raise BenchError(f"no encpipe package in {package_dir}")
        env = dict(self.base_env)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_dir, *venv_site_packages(), env.get("PYTHONPATH")]))
        self.base_env = env
        plain = [self.python, "-m", "encpipe"]
        probe = "import encpipe, os; print(os.path.realpath(encpipe.__file__))"
        found = command_output([self.python, "-c", probe], env)
        if found == os.path.realpath(wanted):
            return plain, f"{self.python} -m encpipe  (package {os.path.dirname(found)})"
        command = [self.python, "-c", BOOTSTRAP, package_dir]
        self.notes.append(f"another encpipe ({found}) shadows {package_dir}: children run it via runpy")
        return command, f"{self.python} -c <runpy bootstrap> {package_dir}  (runpy adds start-up)"

    def _facts(self):
        cpu = "unknown"
        try:
            with open("/proc/cpuinfo") as f:
                cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
        except OSError:
            pass
        probe = ("import platform, Crypto\ntry:\n    import cryptography as c; v = c.__version__\n"
                 "except ImportError:\n    v = '-'\nprint(platform.python_version(), Crypto.__version__, v)")
        found = command_output([self.python, "-c", probe], self.base_env).split()
        python, pycryptodome, cryptography = (found[-3:] if len(found) >= 3 else ["?"] * 3)
        return {
            "cpus": os.cpu_count(),
            "cpus_usable": self.cores,
            "cpu_model": cpu,
            "kernel": platform.release(),
            "python": python,
            "python_executable": self.python,
            "pycryptodome": pycryptodome,
            "cryptography": cryptography,
            "openssl": command_output(["openssl", "version"]) if shutil.which("openssl") else "-",
            "encpipe_command": self.encpipe_how,
            "load_average_start": os.getloadavg(),
        }

    def enc(self, *args, cipher=None, env=None):
        env = dict(env or self.base_env, ENCPIPE_KEY=self.key)
        if cipher:
            env["ENCPIPE_CIPHER"] = cipher
        return (self.encpipe + list(args), env)

    def enc_public_key(self, *args, cipher=None):
        """An encpipe stage that seals to a recipient or opens by an identity: no raw key in its environment."""
        argv, env = self.enc(*args, cipher=cipher)
        return argv, {k: v for k, v in env.items() if k != "ENCPIPE_KEY"}

    def x25519(self):
        """The bench's X25519 identity file and its public key (the recipient), made once by encpipe keygen."""
        if not self._x25519:
            self._x25519 = self._keygen("--x25519", "x25519-identity.key")
        return self._x25519

    def signing(self):
        """The bench's signing key file and its verify key, made once by encpipe keygen."""
        if not self._signing:
            self._signing = self._keygen("--sign", "signing.key")
        return self._signing

    def _keygen(self, kind, name):
        path = self.path(name)
        argv, env = self.enc("keygen", kind, "-o", path)
        public = command_output(argv, env).split()
        if not os.path.exists(path) or not public:
            raise BenchError(f"encpipe keygen {kind} failed: {' '.join(public)}")
        return path, public[0]

    # --- inputs ---

    def prepare_inputs(self):
        size = self.opts.size
        self.say(f"writing {human(size)} of random data")
        self.data = self.path("data.bin")
        write_random(self.data, size)
        self.digest = file_digest(self.data)
        for name, key in (("key", self.key), ("key2", os.urandom(32).hex())):
            with os.fdopen(os.open(self.path(name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
                f.write(key + "\n")
        self.peers = find_peers(self)
        self.say("encrypting the input with each tool, and checking that it decrypts")
        self.sealed = {}
        for chunk in self.opts.chunk_sizes:
            name = self.path(f"data.{chunk}.enc")
            run([self.enc("seal", "--chunk-size", chunk)], self.data, name)
            self.sealed[chunk] = name
        for peer in self.peers:
            if peer.get("encrypt"):
                run([peer["encrypt"]], self.data, peer["file"])
        self.empty_sealed = self.path("empty.enc")
        run([self.enc("seal")], None, self.empty_sealed)
        if "throughput" in self.opts.only and PUBLIC_KEY_CIPHER in self.ciphers:
            self.x25519_sealed = self.path("data.x25519.enc")
            run([self.enc_public_key("seal", "--recipient", self.x25519()[1])], self.data, self.x25519_sealed)
            self.check(f"encpipe open --identity ({PUBLIC_KEY_CIPHER})", [self.enc_public_key(
                "open", "--identity", self.x25519()[0], cipher=PUBLIC_KEY_CIPHER)], self.x25519_sealed)
        for chunk, name in self.sealed.items():
            for cipher in self.ciphers:
                self.check(f"encpipe open ({chunk} chunks, {cipher})", [self.enc("open", cipher=cipher)], name)
        for peer in self.peers:
            if peer.get("decrypt"):
                self.check(peer["name"], [peer["decrypt"]], peer["file"])

    def check(self, what, stages, stdin):
        if output_digest(stages, stdin) != self.digest:
            raise BenchError(f"{what} did not give back the input: refusing to report numbers")

    def cleanup(self):
        for peer in getattr(self, "peers", []):
            if peer.get("gnupghome"):
                subprocess.run(["gpgconf", "--kill", "all"], env=dict(self.base_env, GNUPGHOME=peer["gnupghome"]),
                               capture_output=True)


def find_peers(ctx):
    """The installed peers, each with its encrypt and decrypt stage and a file it encrypted."""
    peers, env = [], ctx.base_env
    if shutil.which("age") and shutil.which("age-keygen"):
        identity = ctx.path("age.key")
        subprocess.run(["age-keygen", "-o", identity], env=env, check=True, capture_output=True)
        recipient = command_output(["age-keygen", "-y", identity], env)
        peers.append(dict(
            name=f"age {command_output(['age', '--version'], env)}", tool="age", file=ctx.path("data.age"),
            encrypt=(["age", "-r", recipient], env), decrypt=(["age", "-d", "-i", identity], env),
            seal_label="age -r RECIPIENT", open_label="age -d -i IDENTITY",
        ))
    if shutil.which("openssl"):
        key, iv = os.urandom(32).hex(), os.urandom(16).hex()
        version = " ".join(command_output(["openssl", "version"], env).split()[:2])
        for mode in ("ctr", "cbc"):
            base = ["openssl", "enc", f"-aes-256-{mode}", "-K", key, "-iv", iv]
            peers.append(dict(
                name=f"{version} aes-256-{mode}", tool=f"openssl-{mode}", file=ctx.path(f"data.{mode}"),
                encrypt=(base, env), decrypt=(base + ["-d"], env),
                seal_label=f"openssl enc -aes-256-{mode}", open_label=f"openssl enc -d -aes-256-{mode}",
            ))
    if shutil.which("gpg"):
        home = ctx.path("gnupg")
        os.mkdir(home, 0o700)
        passfile = ctx.path("gpg.pass")
        with open(passfile, "w") as f:
            f.write(os.urandom(16).hex() + "\n")
        gpg_env = dict(env, GNUPGHOME=home)
        base = ["gpg", "--batch", "--quiet", "--yes", "--no-tty", "--pinentry-mode", "loopback",
                "--passphrase-file", passfile]
        peers.append(dict(
            name=command_output(["gpg", "--version"], gpg_env).splitlines()[0], tool="gpg", file=ctx.path("data.gpg"),
            gnupghome=home, decrypt=(base + ["--decrypt", "-o", "-"], gpg_env),
            encrypt=(base + ["--symmetric", "--cipher-algo", "AES256", "--compress-algo", "none", "-o", "-"], gpg_env),
            seal_label="gpg --symmetric --compress-algo none", open_label="gpg --decrypt",
        ))
    for cipher in ctx.ciphers:
        peers.append(dict(
            name=f"python GCM loop ({cipher})", tool=f"python-{cipher}", file=None,
            encrypt=([ctx.python, "-c", GCM_LOOPS[cipher]], env), decrypt=None,
            seal_label=f"python loop, {cipher} GCM 1 MiB, 1 thread", open_label=None,
        ))
    return peers
