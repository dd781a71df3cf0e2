"""A systemd service unit for this install of encpipe-backup."""

import os
import re
import shlex

from ..errors import UsageError
from ..keyargs import FD_PATH, public_forms, secret_paths
from ..keys import STDIN_PATHS
from ..textform import refuse_key_in_place
from .. import pgopts
from ..pgbackupargs import HELP, parse
from ..pgcli import Failure
from .remotes import refuse_as_to

DEFAULT_DIR = "/var/backups/encpipe"
SOURCES = "/etc/encpipe"  # where LoadCredential= reads each credential, as root
USER = "postgres"  # the unit's User=
CREDENTIALS = "${CREDENTIALS_DIRECTORY}/"
KEY_FILES = ("--key-file", "--identity", "--passphrase-file", "--recipient-file", "--sign-key", "--signer-file")
HIDDEN_HINTS = {"--dir": f"keep the backups where the unit can write them, e.g. {DEFAULT_DIR}",
                "--metrics-file": "write it in a directory of the backups' user, e.g. /var/lib/encpipe",
                "ExecStart": "run --systemd-unit from an install the service can reach, e.g. /opt/encpipe "
                             "(README: Installing)",
                "python3": "make the environment with a python3 the service can run: /usr/bin/python3 -m venv "
                           "/opt/encpipe (README: Installing)",
                None: "keep it in /etc/encpipe; a secret as a credential: '${CREDENTIALS_DIRECTORY}/NAME'"}
DEFAULT_ARGS = ["--keep-daily", "14", "--key-file", CREDENTIALS + "encpipe-backup.key"]

TEMPLATE = """\
# Encrypted backup of one PostgreSQL database; the instance name is the
# database, escaped: encpipe-backup@$(systemd-escape DB).service, started
# daily by the timer of the same instance.
#
# Printed by `encpipe-backup --systemd-unit [backup options]` for the
# encpipe-backup at {script}. Install it with
# scripts/systemd/encpipe-backup@.timer and encpipe-failed@.service
# (the OnFailure= hook) in /etc/systemd/system/, then
#   install -d -m 755 /etc/encpipe && encpipe keygen -o /etc/encpipe/backup.key
#   chown postgres: /etc/encpipe/backup.key
#   install -d -m 700 -o postgres -g postgres /var/backups/encpipe
#   systemctl daemon-reload && systemctl enable --now encpipe-backup@shop.timer
# Adjust with `systemctl edit encpipe-backup@.service` (a drop-in): User=,
# PGHOST/PGPORT... in Environment=, TimeoutStartSec= (a hung pg_dump or upload
# then fails the run instead of blocking the next ones). But never a secret in
# Environment=: `systemctl show` prints it to every user. A password goes in a
# credential, as the key does: for libpq, a pgpass file,
#   LoadCredential=pgpass:/etc/encpipe/pgpass
#   Environment=PGPASSFILE=%d/pgpass
[Unit]
Description=Encrypted PostgreSQL backup of database %I
After=network-online.target postgresql.service
Wants=network-online.target
OnFailure=encpipe-failed@%i.service

[Service]
Type=oneshot
User={user}
Group={user}{credentials}
ExecStart={exec_start}
TimeoutStartSec={timeout}
# A stop (systemctl stop, TimeoutStartSec= reached) sends SIGTERM to encpipe-backup
# alone: it stops pg_dump and its rclone itself, which then aborts its unfinished
# upload (a second SIGTERM, systemd's, killed it before that was done), and deletes
# its temporary object: 30 s and one rclone call within its bounds (systemd's 90 s
# default killed that against a slow remote, the failed run unrecorded).
KillMode=mixed
TimeoutStopSec=5min
UMask=0077
Nice=10
IOSchedulingClass=idle
# Hardening: the service can write to the backup directory (and the metrics
# file's) and nowhere else.
NoNewPrivileges=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectSystem=strict
ProtectHome=yes{writable}
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
SystemCallArchitectures=native
CapabilityBoundingSet=
"""


def render(script, args, timeout="6h"):
    """The unit: ExecStart runs `script` with `args` (the backup options, then
    after -- pg_dump's; a default directory, retention and credential key when
    none are given), the database `-- %I` after the options, before pg_dump's."""
    if re.search(r"[\x00-\x1f\x7f]", script):  # in ExecStart= and the comment: a directive of its own
        raise UsageError("the path of this encpipe-backup holds a control character",
                         hint="install it where its path has none, e.g. /opt/encpipe (README: Installing)")
    args = list(args) or [*DEFAULT_ARGS]
    args, dump = (args[:args.index("--")], args[args.index("--") + 1:]) if "--" in args else (args, [])
    if any(re.search(r"[\x00-\x1f\x7f]", arg) for arg in [*args, *dump]):  # a newline: a directive of its own
        raise UsageError("an option of the unit holds a control character", hint="name paths without one")
    for before, arg in zip(["", *args], args):
        if before == "--to" or arg.startswith("--to="):  # 64, before the credential is in a unit file
            refuse_as_to(arg.removeprefix("--to=") if before != "--to" else arg)  # a local one: every run 64
    o = _options(args)
    try:  # as every run would refuse them (64): before, the unit was written and every night failed
        pgopts.check("pg_dump", dump, plain_dump=o["format"] == "plain")
    except pgopts.RefusedOption as e:
        raise UsageError(str(e), hint=e.hint) from None
    metrics = o["metrics"][0].partition("=")[2] if o["metrics"] else None
    for option, path in [("--dir", o["dir"]), ("--metrics-file", metrics or "")]:
        if _VARIABLE.search(path):  # ExecStart= would expand it, ReadWritePaths= would not: every run failed
            raise UsageError(f"{option} {path}: systemd would expand {_VARIABLE.search(path)[0]} in ExecStart= and "
                             "not in ReadWritePaths=", hint="give the path itself")
    for option, path in [("--dir", o["dir"]), ("--metrics-file", metrics or ""),
                         *((f, p) for f in KEY_FILES for p in {**o["seal"], **o["signers"]}[f])]:
        _refuse_hidden(option, path)
    if not o["have_key"]:  # every run: 78, no key (ENCPIPE_KEY in Environment= is every user's to read)
        raise UsageError("no key option: every run of the unit would fail, no key configured (78)",
                         hint=f"add --key-file '{CREDENTIALS}encpipe-backup.key' (what the unit takes without "
                              "options), or --recipient PUBKEY")
    if not o["dir"] and not o["to"]:
        args = ["--dir", DEFAULT_DIR, *args]
    # what the run writes: DIR, the metrics file's directory (nothing on the machine with --to
    # alone: a ReadWritePaths= that is not there fails the unit before encpipe-backup starts)
    writable = [_writable("--dir", o["dir"], o["dir"])] if o["dir"] else [] if o["to"] else [DEFAULT_DIR]
    if metrics is not None:
        writable.append(_writable("--metrics-file", metrics, os.path.dirname(metrics)))
    # after --, %I is the database even when it starts with -, and pg_dump's options follow it
    exec_start = " ".join([*(_quote(a) for a in [script, *args]), "--", "%I", *(_quote(a) for a in dump)])
    writable = f"\nReadWritePaths={' '.join(map(_quote_path, writable))}" if writable else ""
    return TEMPLATE.format(script=script, exec_start=exec_start, timeout=timeout, credentials=_credentials(args),
                           user=USER, writable=writable).rstrip("\n")


def _options(args):
    """The options as encpipe-backup reads them (pgbackupargs.parse); UsageError (64)
    for options it would not take, or that name a database: the instance does (%I),
    and a second one failed every run."""
    try:
        o = parse(args)
    except Failure as e:
        raise UsageError(str(e), hint=e.hint) from None
    if o is HELP:
        raise UsageError("--help is not an option of the unit's run", hint="see encpipe-backup --help")
    if o["seal"]["--passphrase"]:  # every run: 78, cannot prompt
        prompt = next((a for a in args if a in ("-p", "--passphrase")), "-p")
        raise UsageError(f"{prompt} prompts on a terminal, and the unit's run has none",
                         hint="give the passphrase as a credential: --passphrase-file '${CREDENTIALS_DIRECTORY}/NAME'")
    files = {**o["seal"], **o["signers"]}
    descriptors = [f"--passphrase-fd {n}" for n in o["seal"]["--passphrase-fd"]] + [
        f"{option} {path}" for option in KEY_FILES for path in files[option]
        if path in STDIN_PATHS or FD_PATH.fullmatch(path)]
    if descriptors:  # every run: 66, the descriptor not open (systemd opens none of the caller's)
        raise UsageError(f"{descriptors[0]} reads a descriptor the caller opens, and the unit's run has none",
                         hint="give the secret as a credential: --passphrase-file '${CREDENTIALS_DIRECTORY}/NAME'")
    public_forms("--recipient", o["seal"]["--recipient"])  # 64, before a secret is in a unit file
    public_forms("--signer", o["signers"]["--signer"], "verify key")
    for option in ("--key-command", "--passphrase-command"):
        for command in o["seal"][option]:
            refuse_key_in_place(command, option)
    for option in KEY_FILES:
        _refuse_secret_as_path(option, files[option])
    refuse_key_in_place(o["dir"], "--dir", "directory")  # as the run refuses them; before, printed in the unit
    refuse_key_in_place(o["metrics_path"], "--metrics-file", "file name")
    if o["db"]:
        raise UsageError(f"{o['db']}: the database is the instance's name (%I), not one of the unit's options",
                         hint="systemctl start \"encpipe-backup@$(systemd-escape DB).service\"")
    return o


def _refuse_secret_as_path(option, paths):
    """UsageError (64), the value not shown, for a key or passphrase typed where
    `option`'s file belongs, as every run refuses it (keyargs.secret_paths): the unit
    would hold it in ExecStart=, which every user can read. An absolute path, or a
    credential's, is a path even when nothing is there yet (the key may be made after
    the unit): no key starts with a /. Any other path is refused too: the unit runs in
    /, and a %d/NAME is no credential (its % escaped); so is a file in / itself, what
    the caller's shell makes of an unquoted ${CREDENTIALS_DIRECTORY}/NAME (every run: 66)."""
    for path in paths:
        if not path.startswith(("/", CREDENTIALS)):
            secret_paths({option: [path]}, option)
            # every run: 66, the file not found (the unit runs in /; % is escaped, %d is no specifier)
            specifier = path.startswith("%d/")
            raise UsageError(f"{option} {path}: " + ("the unit escapes %, so systemd would not read %d as the "
                                                      "credentials directory" if specifier else
                                                      "the unit runs in /, not here"),
                             hint=f"give an absolute path, or a credential as '{CREDENTIALS}"
                                  f"{path[3:] if specifier else 'NAME'}'")
        if os.path.dirname(path) == "/":  # `${CREDENTIALS_DIRECTORY}/k` unquoted: the caller's shell made it /k
            raise UsageError(f"{option} {path}: a key file in / itself, which a shell makes of an unquoted "
                             f"{CREDENTIALS}{path[1:]} (the variable is the service's, empty here)",
                             hint=f"quote it: '{CREDENTIALS}{path[1:]}', or give the path of the file")


def _writable(option, value, directory):
    """`directory`, which the run writes, for ReadWritePaths=; UsageError (64) for one
    that is not absolute (the unit runs in /, and systemd ignores such a path there),
    is / (the whole file system writable), or is in /tmp or /var/tmp."""
    if not os.path.isabs(value):
        raise UsageError(f"{option} {value}: the unit runs in /, not here, and makes only absolute paths writable",
                         hint="give an absolute path")
    if os.path.normpath(directory) == "/":
        raise UsageError(f"{option} {value}: the unit would make the whole file system writable (/)",
                         hint="give it a directory of its own, e.g. /var/lib/encpipe")
    return directory


def _refuse_hidden(option, path):
    """UsageError (64) for a `path` the unit's sandbox hides from the service: in /tmp
    or /var/tmp, which PrivateTmp= makes its own (and removes when it stops), or
    in /home, /root or /run/user, which ProtectHome= makes inaccessible (dropping
    a ReadWritePaths= below them)."""
    why = hidden(path)
    if why:
        raise UsageError(f"{option} {path}: {why}", hint=HIDDEN_HINTS.get(option, HIDDEN_HINTS[None]))


def hidden(path):
    """Why the unit's sandbox hides `path` from the service, or None."""
    if _below(path, ("/tmp", "/var/tmp")):
        return "the unit's PrivateTmp= gives the service a /tmp and /var/tmp of its own, which no one else sees"
    if _below(path, ("/home", "/root", "/run/user")):
        return "the unit's ProtectHome= hides /home, /root and /run/user from the service"
    return None


def interpreter(script):
    """The real path of the python3 beside `script` that it runs (a virtual
    environment's bin: encpipe-sh-setup's encpipe_locate), or None: none there, or a
    checkout's script, which runs the python3 on PATH."""
    here = os.path.dirname(script)
    beside = os.path.join(here, "python3")
    if os.path.isfile(os.path.join(here, os.pardir, "encpipe", "backup", "__init__.py")) \
            or not os.access(beside, os.X_OK):
        return None
    return os.path.realpath(beside)


def _below(path, tops):
    """Whether `path` is one of `tops` or in one."""
    return any(os.path.normpath(path) == top or os.path.normpath(path).startswith(top + "/") for top in tops)


def _credentials(args):
    """A LoadCredential= line for each ${CREDENTIALS_DIRECTORY}/NAME the options name
    (--key-file .../encpipe-backup.key, --sign-key=.../encpipe-backup.sign), and
    none else (systemd fails a unit whose credential file is not there): from
    /etc/encpipe/NAME, less its "encpipe-" prefix. UsageError (64) for a NAME
    LoadCredential= cannot hold as it is (it is not quoted)."""
    names = _credential_names(args)
    for name in names:
        if not re.fullmatch(r"[A-Za-z0-9_.+-]+", name) or name in (".", ".."):
            raise UsageError(f"{CREDENTIALS}{name}: not a credential name a unit can load as it is",
                             hint="name it with letters, digits, '.', '_', '+' and '-' only")
    lines = "".join(f"\nLoadCredential={name}:{_source(name)}" for name in dict.fromkeys(names))
    return lines and lines + ("\n# Each key is copied into a private, read-only directory for this run only;"
                              "\n# it is never in the environment or on a command line.")


def _credential_names(args):
    return [m[1] for a in args for m in [re.search(r"\$\{CREDENTIALS_DIRECTORY\}/([^/]*)$", a)] if m]


def _source(name):
    return f"{SOURCES}/{name.removeprefix('encpipe-')}"


def replaceable(script, args, judge_script=True):
    """[(warning, hint)]: for `script` (ExecStart=, run as USER with the key), unless not
    `judge_script` (one the sandbox hides: no run starts it), when a user other than
    the caller and root could replace it or its interpreter (the file, a link on the
    way, its directory or one above: keyplace.replacer); for each
    credential (render's `args`), when a user other than the caller, root and USER
    could write its source in SOURCES or a directory above it, which systemd reads as
    root."""
    from ..keyplace import replacer
    from ..writers import first_other_writer, other_writer

    said = []
    for path in dict.fromkeys(p for p in (script, interpreter(script)) if p and judge_script):
        found = replacer(path)
        if found:
            what = f"ExecStart={script}" + ("" if path == script else f" runs the python3 beside it, {path}")
            said.append((f"{what}: {found[0]} can be written by {found[1]}, who could make every run execute code "
                         "of theirs, with the key",
                         "install it where only root can write, e.g. /opt/encpipe (README: Installing)"))
    trusted = {0, os.geteuid(), *_uid(USER)}
    args = list(args) or [*DEFAULT_ARGS]
    for name in dict.fromkeys(_credential_names(args[:args.index("--")] if "--" in args else args)):
        source = _source(name)
        try:
            info = os.stat(source)
        except OSError:
            info = None
        writer = info and other_writer(info, trusted, sticky_ok=False, where=source)
        found = (source, writer) if writer else \
            first_other_writer(SOURCES, trusted, sticky_here=False, missing_ok=True)
        if found:
            said.append((f"LoadCredential={name}:{source}: {found[0]} can be written by {found[1]}, who could put a "
                         "key of theirs there", "keep the credentials where only root can write (chmod go-w)"))
    return said


def _uid(user):
    import pwd

    try:
        return [pwd.getpwnam(user).pw_uid]
    except KeyError:
        return []


_VARIABLE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")  # what _quote keeps for systemd to expand


def _escaped(text, variables):
    """`text` inside systemd's double quotes: backslash, quote and % (a specifier)
    escaped, and $ too where `variables` are expanded (ExecStart=)."""
    text = text.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return text.replace("$", "$$") if variables else text


def _quote_path(path):
    """A path of a list such as ReadWritePaths=: split at spaces unless quoted, with
    specifiers (%), no variables."""
    if shlex.quote(path) == path:
        return path.replace("%", "%%")
    return '"' + _escaped(path, variables=False) + '"'


def _quote(arg):
    """systemd's quoting: ${VAR} expands, inside double quotes too; $$ is a $, % a
    specifier. Each ${VAR} of `arg` is kept for systemd to expand."""
    pieces = re.split(f"({_VARIABLE.pattern})", arg)  # odd ones: the ${VAR}s
    if all(i % 2 or not piece or shlex.quote(piece) == piece for i, piece in enumerate(pieces)):
        return arg.replace("%", "%%")
    return '"' + "".join(piece if i % 2 else _escaped(piece, variables=True) for i, piece in enumerate(pieces)) + '"'
