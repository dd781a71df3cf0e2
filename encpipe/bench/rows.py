"""The measured rows: throughput (file and pipe), start-up and peak memory."""

import os
import subprocess

from .context import GENERATOR, PUBLIC_KEY_CIPHER
from .measure import GiB, MiB, Row, human, measure_rounds, paired, run

# Writes a file in the previous backup tool's format (salt, IV, tag, ciphertext)
# from standard input, with the key in BENCH_LEGACY_KEY, for `open --legacy`.
LEGACY_WRITER = """
import os, sys
from Crypto.Cipher import AES
iv = os.urandom(16)
cipher = AES.new(bytes.fromhex(os.environ["BENCH_LEGACY_KEY"]), AES.MODE_GCM, nonce=iv)
with open(sys.argv[1], "wb") as f:
    f.write(os.urandom(32) + iv + bytes(16))
    while block := sys.stdin.buffer.read(1 << 20):
        f.write(cipher.encrypt(block))
    f.seek(48)
    f.write(cipher.digest())
"""


def _encpipe_rows(ctx, cipher):
    """seal and open of the file, at auto and one thread, at each chunk size."""
    size, rows = ctx.opts.size, []
    for chunk in ctx.opts.chunk_sizes:
        shown = "default" if chunk == "auto" else chunk
        for threads in ("auto", "1"):
            what = f"{threads} thread{'s' if threads == 'auto' else ''}, {shown} chunks"
            rows.append(Row("seal", f"encpipe seal ({what})", [ctx.enc("seal", "--chunk-size", chunk, "--threads",
                            threads, cipher=cipher)], ctx.data, op="seal", size=size, cipher=cipher,
                            threads=threads, chunk=chunk))
            rows.append(Row("open", f"encpipe open ({what})", [ctx.enc("open", "--threads", threads, cipher=cipher)],
                            ctx.sealed[chunk], op="open", size=size, cipher=cipher, threads=threads, chunk=chunk))
    return rows


def _public_key_rows(ctx, pipe=False):
    """seal to the bench's X25519 recipient and open by its identity, as age -r and age -d -i do (no raw key:
    no authenticator pass), with the fast library, at default chunks: from the file at auto and one thread,
    or through a pipe at the defaults."""
    if not ctx.x25519_sealed:
        return []
    identity, recipient = ctx.x25519()
    size, cipher, rows = ctx.opts.size, PUBLIC_KEY_CIPHER, []
    ops = (("seal", "seal --recipient RECIPIENT", ("seal", "--recipient", recipient), ctx.data),
           ("open", "open --identity IDENTITY", ("open", "--identity", identity), ctx.x25519_sealed))
    if pipe:
        for op, label, args, path in ops:
            rows.append(Row("public-key", f"cat FILE | encpipe {label} (defaults)", [(["cat", path], ctx.base_env),
                            ctx.enc_public_key(*args, cipher=cipher)], op=f"pipe-{op}-x25519", size=size,
                            cipher=cipher, threads="auto", chunk="auto"))
        return rows
    for threads in ("auto", "1"):
        what = f"{threads} thread{'s' if threads == 'auto' else ''}, default chunks"
        for op, label, args, path in ops:
            rows.append(Row("public-key", f"encpipe {label} ({what})", [ctx.enc_public_key(
                            *args, "--threads", threads, cipher=cipher)], path, op=f"{op}-x25519", size=size,
                            cipher=cipher, threads=threads, chunk="auto"))
    return rows


def _pipe_rows(ctx):
    """The same through a pipe (cat FILE | ...), encpipe at its defaults."""
    size, rows = ctx.opts.size, []
    cat = (["cat", ctx.data], ctx.base_env)
    cat_sealed = (["cat", ctx.sealed["auto"]], ctx.base_env)
    for cipher in ctx.ciphers:
        rows.append(Row("pipe", "cat FILE | encpipe seal (defaults)", [cat, ctx.enc("seal", cipher=cipher)],
                        op="pipe-seal", size=size, cipher=cipher, threads="auto", chunk="auto"))
        rows.append(Row("pipe", "cat FILE | encpipe open (defaults)", [cat_sealed, ctx.enc("open", cipher=cipher)],
                        op="pipe-open", size=size, cipher=cipher, threads="auto", chunk="auto"))
    rows += _public_key_rows(ctx, pipe=True)
    for peer in ctx.peers:
        if peer["tool"] in ("age", "openssl-ctr"):
            rows.append(Row("pipe", f"cat FILE | {peer['seal_label']}", [cat, peer["encrypt"]], op="pipe-seal",
                            size=size, tool=peer["tool"]))
            rows.append(Row("pipe", f"cat FILE | {peer['open_label']}", [(["cat", peer["file"]], ctx.base_env),
                            peer["decrypt"]], op="pipe-open", size=size, tool=peer["tool"]))
    return rows


def throughput(ctx):
    size, sealed = ctx.opts.size, ctx.sealed["auto"]
    rows = []
    for cipher in ctx.ciphers:
        rows += _encpipe_rows(ctx, cipher)
    rows += _public_key_rows(ctx)
    rows.append(Row("seal", "encpipe seal --progress", [ctx.enc("seal", "--progress")], ctx.data, op="seal",
                    size=size, cipher=ctx.ciphers[0], threads="auto", chunk="auto"))
    for peer in ctx.peers:
        rows.append(Row("seal", peer["seal_label"], [peer["encrypt"]], ctx.data, op="seal", size=size,
                        tool=peer["tool"]))
        if peer["decrypt"]:
            rows.append(Row("open", peer["open_label"], [peer["decrypt"]], peer["file"], op="open", size=size,
                            tool=peer["tool"]))
    rows += _pipe_rows(ctx)
    key, key2 = ctx.path("key"), ctx.path("key2")
    rows += [
        Row("other", "cat (I/O floor)", [(["cat"], ctx.base_env)], sealed, op="copy", size=size, tool="cat"),
        Row("other", "encpipe rewrap --add-key-file", [ctx.enc("rewrap", "--key-file", key, "--add-key-file", key2)],
            sealed, op="rewrap", size=size),
        Row("other", "encpipe inspect --verify", [ctx.enc("inspect", "--verify", "--key-file", key, sealed)],
            None, op="verify", size=size, cipher=ctx.ciphers[0]),
        Row("other", "encpipe inspect (header only)", [ctx.enc("inspect", sealed)], None, op="inspect", size=size),
    ]
    ctx.say(f"throughput: {len(rows)} commands x {ctx.opts.rounds} rounds on {human(size)}")
    measure_rounds(rows, ctx.opts.rounds, progress=ctx.say)
    ctx.rows = rows
    refs = {(r.op, r.tool): r for r in rows if r.tool in ("age", "openssl-ctr")}
    width = max([44] + [len(row.label) for row in rows])
    public = (", or with --recipient to an X25519 public key, as age -r does (opened by --identity: one pass)"
              if ctx.x25519_sealed else "")
    lines = [f"{human(size)} of random data from a file in the page cache on stdin (cat FILE |: through a pipe), "
             f"output to /dev/null; median of {ctx.opts.rounds} round(s); CPU: user + system of the command "
             f"(its whole process tree); x age: this / age for the same operation, the median of the "
             f"rounds' ratios (each round of this row over the same round of age's)",
             "encpipe seals with a raw key (format v2 adds its authenticator, a GMAC pass over the ciphertext, "
             "and open reads such a file twice)" + public,
             f"{'command':{width}} {'cipher':12} {'wall s':>7} {'GiB/s':>6} {'CPU s/GiB':>9} {'RSS MiB':>7} "
             f"{'wall x age':>10} {'CPU x age':>9}"]
    for row in rows:
        age = refs.get((row.op.removesuffix("-x25519") if row.op else None, "age"))
        ratios = f"{paired(row, age):10.2f} {paired(row, age, cpu=True):9.2f}" if age else ""
        lines.append(f"{row.label:{width}} {row.cipher or '':12} {row.median:7.3f} {size / GiB / row.median:6.2f} "
                     f"{row.per_gib(row.cpu_median):9.3f} {row.peak_rss / MiB:7.1f} {ratios}")
    ctx.sections.append(("Throughput", lines))


FLOOR_LABEL = "python3 -c 'import docopt' (parser alone)"


def startup(ctx):
    """Each command against `python3 -I -c pass` on the same interpreter."""
    key = ctx.path("key")
    rows = [Row("startup", "python3 -I -c pass", [([ctx.python, "-I", "-c", "pass"], ctx.base_env)], rss=False,
                tool="python"),
            # the floor of any docopt command line: the parser alone (with re and typing, which it imports)
            Row("startup", FLOOR_LABEL, [([ctx.python, "-c", "import docopt"], ctx.base_env)], rss=False,
                tool="python"),
            Row("startup", "encpipe --version", [ctx.enc("--version")], rss=False, op="version"),
            Row("startup", "encpipe inspect FILE (header only)", [ctx.enc("inspect", ctx.empty_sealed)], rss=False,
                op="inspect"),
            Row("startup", "encpipe keyid --key-file FILE", [ctx.enc("keyid", "--key-file", key)], rss=False,
                op="keyid")]
    for cipher in ctx.ciphers:
        rows += [Row("startup", "encpipe seal < /dev/null (raw key)", [ctx.enc("seal", cipher=cipher)], rss=False,
                     op="seal", cipher=cipher),
                 Row("startup", "encpipe open < empty sealed file", [ctx.enc("open", cipher=cipher)],
                     ctx.empty_sealed, rss=False, op="open", cipher=cipher)]
    identity, sealed = _x25519_empty(ctx)
    for cipher in ctx.ciphers:
        rows.append(Row("startup", "encpipe open --identity < empty X25519 file",
                        [ctx.enc_public_key("open", "--identity", identity, cipher=cipher)], sealed,
                        rss=False, op="open-x25519", cipher=cipher))
    for row in rows:  # warm the bytecode cache and the page cache
        row.measure()
        row.results.clear()
    reps = ctx.opts.startup_reps
    ctx.say(f"start-up: {len(rows)} commands x {reps} x {ctx.opts.rounds} rounds")
    measure_rounds(rows, ctx.opts.rounds, reps)
    ctx.startup_rows = rows
    lines = [f"median of {reps * ctx.opts.rounds} runs each, run directly (not under GNU time); x python: the "
             f"median of the ratios of each run to the same run of python3 -I -c pass",
             f"{'command':44} {'cipher':12} {'median ms':>9}  {'x python':>8}"]
    for row in rows:
        lines.append(f"{row.label:44} {row.cipher or '':12} {row.median * 1000:9.1f}  {paired(row, rows[0]):8.2f}")
    ctx.sections.append(("Start-up", lines))


def _x25519_empty(ctx):
    """An identity file, and an empty input sealed to its public key only."""
    (identity, recipient), sealed = ctx.x25519(), ctx.path("empty-x25519.enc")
    run([ctx.enc_public_key("seal", "--recipient", recipient)], None, sealed)
    return identity, sealed


def memory(ctx):
    """generator | seal | open at each size, chunk size and cipher: the input never on disk."""
    lines = ["generator | encpipe seal --chunk-size C | encpipe open > /dev/null (the input is never on disk), "
             "default threads",
             f"{'input':>10} {'chunks':>14} {'cipher':12} {'wall s':>7} {'seal RSS MiB':>12} {'open RSS MiB':>12}"]
    ctx.rss_rows = []
    # the largest chunks signed as well: --sign-key, and --signer through a pipe (spooled, then opened)
    variants = [(chunk, False) for chunk in ctx.opts.rss_chunks] + [(ctx.opts.rss_chunks[-1], True)]
    for size in ctx.opts.rss_sizes:
        for chunk, signed in variants:
            for cipher in ctx.ciphers:
                gen = ([ctx.python, "-c", GENERATOR, str(size)], ctx.base_env)
                sign, check = (["--sign-key", ctx.signing()[0]], ["--signer", ctx.signing()[1]]) if signed else ([], [])
                shown = f"{chunk} signed" if signed else chunk
                row = Row("rss", f"rss {human(size)} {shown}",
                          [gen, ctx.enc("seal", "--chunk-size", chunk, *sign, cipher=cipher),
                           ctx.enc("open", *check, cipher=cipher)], size=size, cipher=cipher, chunk=chunk)
                ctx.say(f"memory: {human(size)} through seal | open, {shown} chunks, {cipher}")
                row.measure()
                ctx.rss_rows.append(row)
                _, seal_rss, open_rss = row.results[0].rss
                lines.append(f"{human(size):>10} {shown:>14} {cipher:12} {row.median:7.2f} {seal_rss / MiB:12.1f} "
                             f"{open_rss / MiB:12.1f}")
    lines += ["", "encpipe open --legacy FILE > /dev/null (the previous tool's format)",
              f"{'input':>10} {'wall s':>7} {'peak RSS MiB':>12}"]
    ctx.legacy_rows = []
    legacy_env = dict(ctx.base_env, BACKUP_ENCRYPTION_KEY=ctx.key)
    for size in ctx.opts.rss_sizes:
        path = ctx.path(f"legacy-{size}.sql.enc")
        ctx.say(f"memory: {human(size)} legacy file through open --legacy")
        generator = subprocess.Popen([ctx.python, "-c", GENERATOR, str(size)], stdout=subprocess.PIPE,
                                     env=ctx.base_env)
        subprocess.run([ctx.python, "-c", LEGACY_WRITER, path], stdin=generator.stdout, check=True,
                       env=dict(ctx.base_env, BENCH_LEGACY_KEY=ctx.key))
        generator.stdout.close()
        generator.wait()
        row = Row("rss", f"legacy open {human(size)}", [ctx.enc("open", "--legacy", path, env=legacy_env)],
                  op="legacy-open", size=size)
        try:
            row.measure()
        finally:
            os.unlink(path)
        ctx.legacy_rows.append(row)
        lines.append(f"{human(size):>10} {row.median:7.2f} {row.peak_rss / MiB:12.1f}")
    ctx.sections.append(("Peak memory", lines))
