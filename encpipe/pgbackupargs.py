"""encpipe-backup's command line: its options into a dict (parse), checked and
completed before anything runs (validate): a mistake fails (64; 78 without a
key) before a directory is made, a lock taken or pg_dump started."""

import re

from . import dirlock, pgopts
from .argwords import option_words
from .backup.remotes import is_remote, refuse_as_to
from .pathsearch import which
from .pgcli import FD_NOT_A_NUMBER, Failure, unknown_option, utf8_name
from .errors import UsageError
from .slots import MAX_SCRYPT_LOG2_N, MIN_SCRYPT_LOG2_N
from .textform import NAME_MAX_BYTES, refuse_key_as_new_path, shown_value
from .usage_errors import empty_value, shown_argument
from .workers import chunk_log2, int_option, thread_option

PROG = "encpipe-backup"
_OPEN = ("--key-file", "--key-command", "--identity", "--passphrase-file", "--passphrase-command")
_KEYS = _OPEN + ("--recipient", "--recipient-file")
_POLICY = ("--keep", "--keep-last", "--keep-daily", "--keep-weekly", "--keep-monthly", "--max-age")
_VALUE = {"--dir", "--to", "--format", "--metrics-file", "--compress", "--compress-level", "--compress-threads",
          "--sign-key", "--passphrase-fd", "--chunk-size", "--work-factor", "--threads", "--signer",
          "--signer-file", *_KEYS, *_POLICY}
_REPEATABLE = {*_KEYS, "--sign-key", "--passphrase-fd", "--signer", "--signer-file"}
_FLAGS = {"-p", "--passphrase", "--progress", "--allow-shared-dir", "--count-unauthenticated", "--no-globals",
          "--new-cluster"}
HELP = object()


def usage_error(message):
    return Failure(message, 64, hint=f"see {PROG} --help")


def parse(argv):
    """The options of `argv` (HELP for -h or --help); Failure (64) on a mistake."""
    seal = {o: [] for o in _KEYS + ("--sign-key", "--passphrase-fd")}
    seal.update({"--chunk-size": None, "--work-factor": None, "--threads": None, "--passphrase": False,
                 "--progress": False, "--sign-key-command": []})
    o = {"dir": "", "to": "", "format": "plain", "compress": "", "level": "", "threads": "", "globals": True,
         "db": "", "seal": seal, "policy": [], "open": [], "signers": {"--signer": [], "--signer-file": []},
         "metrics": [], "metrics_path": "", "shared": [], "unauthenticated": [],
         "have_key": False, "new_cluster": False}
    args, seen = list(argv), set()
    while args:
        arg = args.pop(0)
        if arg.startswith("--") and "=" in arg:
            name = arg.split("=", 1)[0]
            if name in _FLAGS:
                raise usage_error(f"{name} takes no value")
            if name in _VALUE:
                args[:0] = arg.split("=", 1)
                continue
        if arg in ("-h", "--help"):
            return HELP
        if arg in _VALUE:
            if not args:
                raise usage_error(f"{arg} needs a value")
            if not args[0]:
                raise Failure(str(empty_value(arg)), 64, hint=empty_value(arg).hint)
            if arg in seen and arg not in _REPEATABLE:
                raise usage_error(f"{arg} given more than once")
            seen.add(arg)
            _option(o, arg, args.pop(0))
        elif arg in ("-p", "--passphrase"):
            seal["--passphrase"], o["have_key"] = True, True
        elif arg == "--progress":
            seal["--progress"] = True
        elif arg == "--allow-shared-dir":
            o["shared"] = [arg]
        elif arg == "--count-unauthenticated":
            o["unauthenticated"] = [arg]
        elif arg == "--no-globals":
            o["globals"] = False
        elif arg == "--new-cluster":
            o["new_cluster"] = True
        elif arg == "--":
            break
        elif arg.startswith("-"):
            raise usage_error(unknown_option(arg))
        elif o["db"]:
            raise usage_error(f"only one DBNAME, not also {shown_argument(arg)}")  # a key typed last: not shown
        else:
            o["db"] = arg
    if not o["db"] and args:
        o["db"] = args.pop(0)
    o["dump"] = args
    return o


def _option(o, name, value):
    seal = o["seal"]
    if name in ("--dir", "--to", "--format", "--compress"):
        o[name[2:]] = value
    elif name in ("--compress-level", "--compress-threads"):
        o[name[11:]] = value
    elif name in _POLICY:  # these three for `job commit` and `job abort`: one word each (argwords)
        o["policy"] += option_words(name, [value])
    elif name == "--metrics-file":
        o["metrics"], o["metrics_path"] = option_words(name, [value]), value
    elif name in ("--signer", "--signer-file"):
        o["signers"][name].append(value)
    elif name in ("--chunk-size", "--work-factor", "--threads"):
        seal[name] = value
    elif name == "--passphrase-fd":
        if not re.fullmatch(r"[0-9]+", value):
            raise usage_error(FD_NOT_A_NUMBER)
        seal[name].append(int(value))
        o["have_key"] = True
    else:
        seal[name].append(value)
        o["have_key"] = o["have_key"] or name in _KEYS
        if name in _OPEN:
            o["open"] += option_words(name, [value])


def validate(o, env):
    """Checks before anything runs; fills in the compressor, the kind and the directory."""
    db = o["db"]
    if not db:
        raise usage_error("no DBNAME given")
    utf8_name(db)  # 64: it goes into SQL; a key or a connection string's password: not shown
    if "/" in db or db.startswith("."):
        raise usage_error(f"cannot name a file after database {db}")
    if len(db.encode()) > NAME_MAX_BYTES:  # the server would take its first 63 bytes: another database's name
        raise usage_error(f"database name {db} is longer than PostgreSQL's {NAME_MAX_BYTES} bytes")
    if o["format"] not in ("plain", "custom"):
        raise usage_error(f"--format must be plain or custom, not {shown_value(o['format'])}")
    given = o["compress"]
    if not o["compress"]:
        o["compress"] = "zstd" if o["format"] == "plain" and which("zstd") else "none"
    if o["compress"] not in ("zstd", "gzip", "none"):
        raise usage_error(f"--compress must be zstd, gzip or none, not {shown_value(o['compress'])}")
    # any of them for a custom archive, even `none`, and a level for no compressor: taken and
    # not used (before, the archive came out compressed at pg_dump's level, status 0)
    if o["format"] != "plain" and (given or o["level"] or o["threads"]):
        what = f"--compress {given}" if given else "--compress-level" if o["level"] else "--compress-threads"
        raise usage_error(f"{what} is for plain dumps; custom dumps take pg_dump's -Z (after --)")
    if o["level"] and o["compress"] == "none":
        raise usage_error("--compress-level is for zstd and gzip, not --compress none")
    if not re.fullmatch(r"[0-9]*", o["level"] + o["threads"]):
        raise usage_error("--compress-level and --compress-threads must be whole numbers")
    if o["threads"] and o["compress"] != "zstd":
        raise usage_error("--compress-threads is for zstd")
    low, high = {"zstd": (0, 22), "gzip": (1, 9)}.get(o["compress"], (0, float("inf")))  # now, not once pg_dump runs
    if not low <= int(o["level"] or low) <= high or int(o["threads"] or 0) > 200:
        raise usage_error("--compress-level is 0 to 22 for zstd, 1 to 9 for gzip; --compress-threads 0 to 200")
    chunk_log2(o["seal"]["--chunk-size"])  # as seal would refuse them (64), but before DIR is made
    thread_option(o["seal"])
    if o["seal"]["--work-factor"] is not None:
        int_option(o["seal"]["--work-factor"], "--work-factor", MIN_SCRYPT_LOG2_N, MAX_SCRYPT_LOG2_N)
    try:
        pgopts.check("pg_dump", o["dump"], plain_dump=o["format"] == "plain")
    except pgopts.RefusedOption as e:
        raise Failure(str(e), 64, hint=e.hint) from None
    if o["policy"]:  # a malformed policy is a mistake now, not after the dump
        from .backup.cli import policy_from  # here: the retention modules load only for a run that prunes

        policy = dict.fromkeys(_POLICY)
        policy.update(word.split("=", 1) for word in o["policy"])
        policy_from(policy)
    if not o["have_key"] and "ENCPIPE_KEY" not in env and "ENCPIPE_PASSPHRASE" not in env:
        raise Failure("no key configured: refusing to dump without encryption", 78,
                      hint="use --key-file FILE, --recipient PUBKEY, --passphrase-file FILE..., or set ENCPIPE_KEY")
    ultra = ["--ultra"] if int(o["level"] or 0) > 19 else []  # else zstd -q takes 20 to 22 for 19, silently
    o["squeeze"] = {"zstd": ["zstd", "-q", "-c", *ultra, f"-{o['level'] or 3}", f"-T{o['threads'] or 1}"],
                    "gzip": ["gzip", "-c", f"-{o['level'] or 6}"]}.get(o["compress"])
    o["ext"] = {"zstd": "sql.zst", "gzip": "sql.gz"}.get(o["compress"], "sql" if o["format"] == "plain" else "dump")
    # 64: a credential would be on argv, in the JSON line and the metrics; a local directory is --dir's
    refuse_as_to(o["to"])
    source = "--dir" if o["dir"] else "ENCPIPE_BACKUP_DIR"
    if not o["to"] and not o["dir"]:
        o["dir"] = env.get("ENCPIPE_BACKUP_DIR") or "./backups"
    if o["dir"].startswith("-"):
        o["dir"] = "./" + o["dir"]
    if is_remote(o["dir"]):  # the remote given to --dir: a local directory of its name, nothing off-site
        raise Failure(f"{source}: {o['dir']} names an rclone remote (REMOTE:PATH), not a local directory", 64,
                      hint=f"give it to --to for the remote; ./{o['dir']} is a local directory of that name")
    try:  # made by the run: a key pasted in their place would name a directory or a file
        refuse_key_as_new_path(o["dir"], source, "directory")
        refuse_key_as_new_path(o["metrics_path"], "--metrics-file")
    except UsageError as e:
        raise Failure(str(e), 64, e.hint) from None
    o["lock_wait"] = dirlock.lock_wait(env)
