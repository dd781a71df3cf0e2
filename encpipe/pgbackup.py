"""encpipe-backup's command line and report, for the script that runs the pipelines.

    python3 -m encpipe.pgbackup parse ARGS...   # shell assignments, for eval
    python3 -m encpipe.pgbackup report FINAL DB FORMAT START HEADER PRUNED GLOBALS COMPRESS

`parse` checks everything the script needs before it dumps (exit 64 for a
usage error, 78 when no key is configured) and prints `name=value` lines
quoted for bash: dir format keep max_age db compress level threads globals ext
seal_opts dump_opts secret_fds help.
"""

import json
import os
import re
import shlex
import shutil
import sys
import time

from . import pgopts

PROG = "encpipe-backup"
_VALUE = {"--dir": "dir", "--format": "format", "--keep": "keep", "--max-age": "max_age",
          "--compress": "compress", "--compress-level": "level", "--compress-threads": "threads"}
_SEAL_VALUE = {"--sign-key", "--chunk-size", "--work-factor", "--threads"}
_KEY_VALUE = {"--key-file", "--key-command", "--identity", "--recipient", "--recipient-file", "--passphrase-file",
              "--passphrase-command", "--passphrase-fd"}
_SEAL_FLAGS = {"--progress", "--allow-shared-dir"}


class Usage(Exception):
    pass


def parse(argv):
    o = {"dir": os.environ.get("ENCPIPE_BACKUP_DIR") or "./backups", "format": "plain", "keep": "", "max_age": "",
         "db": "", "compress": "", "level": "", "threads": "", "globals": "1", "help": "0",
         "seal_opts": [], "dump_opts": [], "secret_fds": []}
    have_key, args = False, list(argv)
    while args:
        arg = args.pop(0)
        name, eq, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if arg in ("-h", "--help"):
            o["help"] = "1"
        elif name in _VALUE or name in _SEAL_VALUE or name in _KEY_VALUE:
            if not eq and not args:
                raise Usage("%s needs a value" % name)
            val = inline if eq else args.pop(0)
            if name in _VALUE:
                o[_VALUE[name]] = val
            elif name == "--passphrase-fd":
                if not val.isdigit():
                    raise Usage("--passphrase-fd must be a number, not %s" % val)
                o["secret_fds"].append(val)
            else:
                o["seal_opts"] += [name, val]
            have_key = have_key or name in _KEY_VALUE
        elif arg in ("-p", "--passphrase"):
            o["seal_opts"].append("--passphrase")
            have_key = True
        elif arg in _SEAL_FLAGS:
            o["seal_opts"].append(arg)
        elif arg == "--no-globals":
            o["globals"] = "0"
        elif arg == "--":
            if not o["db"] and args:
                o["db"] = args.pop(0)
            o["dump_opts"] = args
            break
        elif arg.startswith("-"):
            raise Usage("unknown option %s" % arg)
        elif o["db"]:
            raise Usage("only one DBNAME, not also %s" % arg)
        else:
            o["db"] = arg
    if o["help"] == "1":
        return o
    _check(o)
    if not have_key and "ENCPIPE_KEY" not in os.environ and "ENCPIPE_PASSPHRASE" not in os.environ:
        raise NoKey()
    return o


class NoKey(Exception):
    pass


def _check(o):
    if not o["db"]:
        raise Usage("no DBNAME given")
    if "/" in o["db"] or o["db"].startswith("."):
        raise Usage("cannot name a file after database %s" % o["db"])
    if o["format"] not in ("plain", "custom"):
        raise Usage("--format must be plain or custom, not %s" % o["format"])
    plain = o["format"] == "plain"
    if not o["compress"]:
        o["compress"] = "zstd" if plain and shutil.which("zstd") else "none"
    if o["compress"] not in ("zstd", "gzip", "none"):
        raise Usage("--compress must be zstd, gzip or none, not %s" % o["compress"])
    if not plain and o["compress"] != "none":
        raise Usage("--compress %s is for plain dumps; custom dumps take pg_dump's -Z (after --)" % o["compress"])
    if not re.fullmatch(r"[0-9]*", o["level"] + o["threads"]):
        raise Usage("--compress-level and --compress-threads must be whole numbers")
    if o["threads"] and o["compress"] != "zstd":
        raise Usage("--compress-threads is for zstd")
    if not re.fullmatch(r"[0-9]*", o["keep"]):
        raise Usage("--keep must be a whole number, not %s" % o["keep"])
    if not re.fullmatch(r"([0-9]+(\.[0-9]+)?)?", o["max_age"]):
        raise Usage("--max-age must be a number of days, not %s" % o["max_age"])
    try:
        pgopts.check("pg_dump", o["dump_opts"], plain_dump=plain)
    except pgopts.RefusedOption as e:
        raise Usage(str(e)) from None
    o["ext"] = {"zstd": "sql.zst", "gzip": "sql.gz", "none": "sql"}[o["compress"]] if plain else "dump"
    if o["dir"].startswith("-"):
        o["dir"] = "./" + o["dir"]


def shell(o):
    lines = []
    for name, val in sorted(o.items()):
        if isinstance(val, list):
            lines.append("%s=(%s)" % (name, " ".join(shlex.quote(v) for v in val)))
        else:
            lines.append("%s=%s" % (name, shlex.quote(val)))
    return "\n".join(lines)


def report(final, db, fmt, start, header, pruned, gfinal, compress):
    slots = json.loads(header)["slots"]
    line = {
        "filename": os.path.basename(final),
        "path": final,
        "database": db,
        "format": fmt,
        "compress": compress,
        "globals": os.path.basename(gfinal) or None,
        "bytes": os.stat(final).st_size,
        "key_ids": [s["key_id"] for s in slots if s.get("key_id")],
        "slots": [s["type"] for s in slots],
        "duration_seconds": round(time.time() - float(start), 3),
    }
    if pruned:
        line["pruned"] = [r["filename"] for r in json.loads(pruned).get("removed", [])]
    return json.dumps(line)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["report"] and len(argv) == 9:
        print(report(*argv[1:]))
        return 0
    try:
        print(shell(parse(argv[1:])))
    except Usage as e:
        print("%s: error: %s\n%s: hint: see %s --help" % (PROG, e, PROG, PROG), file=sys.stderr)
        return 64
    except NoKey:
        print("%s: error: no key configured: refusing to dump without encryption\n%s: hint: use --key-file FILE, "
              "--recipient PUBKEY, --passphrase-file FILE..., or set ENCPIPE_KEY" % (PROG, PROG), file=sys.stderr)
        return 78
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
