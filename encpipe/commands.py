"""One function per subcommand: turn docopt's dictionary into real values, call the core."""

from . import aead, bounded, keygen
from . import format as fmt
from .errors import InvalidStream, IOFailure, NotSigned, UsageError, unreadable
from .keyargs import (SECRET_FILES, load_keys, load_signers, refuse_output_over_secret, refuse_shared_stdin,
                      secret_fds_open, secret_paths)
from .lazyre import Pattern
from .keys import KeyLoader, KeySources, decode_text, parse_keyring, read_secret_file
from .progress import ProgressReporter, TwoPassReporter, input_size
from .sigdefer import hold_for_good
from .slots import KEY_ID_LEN, MAX_SCRYPT_LOG2_N, MIN_SCRYPT_LOG2_N, Passphrase
from .textform import refuse_key_as_new_path, shown_name
from .stdio import is_pipe, seekable
from .workers import chunk_log2, int_option, thread_option, threads

_KEY_ID = Pattern(r"[0-9a-fA-F]{%d}" % (2 * KEY_ID_LEN))  # as keyid prints it, either case: nothing else


def dispatch(args, io):
    secret_fds_open(args)
    refuse_shared_stdin(args)  # --key-file - --add-key-file /dev/stdin: 64 before either is read
    from .keyplace import refuse_replaceable

    # a key file another user could replace: 73 before anything is read (pubkey's FILE is one)
    given = {**args, "FILE": [args["FILE"]] if args.get("pubkey") and args.get("FILE") else []}
    refuse_replaceable(given, (*SECRET_FILES, "FILE"), args.get("--allow-shared-dir"))
    refuse_key_as_new_path(args.get("--output"), "-o")  # seal's, keygen's: a key pasted there would name it
    for name, command in COMMANDS.items():
        if args.get(name):
            return command(args, io)
    raise AssertionError("docopt accepted an unknown command")


# --- argument conversion ---------------------------------------------------


def key_sources(args):
    return KeySources(
        key_files=secret_paths(args, "--key-file"),
        key_commands=args["--key-command"],
        identity_files=secret_paths(args, "--identity"),
        recipients=args.get("--recipient") or [],
        recipient_files=args.get("--recipient-file") or [],
        passphrase_files=secret_paths(args, "--passphrase-file"),
        passphrase_fds=[int_option(fd, "--passphrase-fd", 0, 1 << 20, shown=False)
                        for fd in args.get("--passphrase-fd") or []],
        passphrase_commands=args.get("--passphrase-command") or [],
        prompt=bool(args.get("--passphrase")),
    )


def loader(args, io):
    work_factor = args.get("--work-factor") or "18"
    return KeyLoader(
        env=io.env,
        warn=io.warn,
        work_factor=int_option(work_factor, "--work-factor", MIN_SCRYPT_LOG2_N, MAX_SCRYPT_LOG2_N),
    )


def progress(args, io, label, total=None, kind=ProgressReporter):
    return kind(io.stderr, label, total=total) if args.get("--progress") else None


def plaintext_total(sealed, src):
    """The plaintext size a sealed regular file implies (its header already read), else None."""
    remaining = input_size(src)
    if remaining is not None:
        remaining -= sealed.trailer_len  # the v2 trailer is not payload
    shape = fmt.payload_shape(remaining, sealed.header.chunk_size) if remaining is not None else None
    return shape[0] if shape else None


def _finish(reporter):
    if reporter:
        reporter.finish()


# --- streams ---------------------------------------------------------------


def open_input(path, io, command="open", prompt=False):
    if path in (None, "-"):
        if io.stdin.isatty():
            to_file = "--in-place FILE" if command == "rewrap" else "a FILE argument"
            raise UsageError(
                "refusing to read encrypted data from a terminal",
                hint=f"redirect standard input from a file or a pipe, or use {to_file}",
            )
        return bounded.as_found(io.stdin, "standard input")
    try:
        src = open(path, "rb")
    except OSError as e:
        raise unreadable(f"cannot open {shown_name(path, prompt)}: {e.strerror or e}", e) from None
    return bounded.as_found(src, shown_name(path, prompt))


def reads_stdin(path):
    return path in (None, "-")


def _refuse_stdin_secrets(sources, data_from_stdin,
                          hint="give the data as a FILE argument, or the secret another way"):
    if data_from_stdin and sources.reads_stdin():
        raise UsageError("standard input cannot carry both the data and a key or passphrase", hint=hint)


def ciphertext_output(io, to_file="-o FILE"):
    if io.stdout.isatty():
        raise UsageError(
            "refusing to write encrypted data to a terminal",
            hint=f"redirect standard output to a file or a pipe, or use {to_file}",
        )
    return io.stdout


# --- commands --------------------------------------------------------------


def read_sealed_header(src):
    """The header of `src`, with a hint at --legacy for files of the previous tool
    (only for files: on a pipe that would mean reading the input to its end)."""
    from . import envelope

    try:
        return envelope.read_header(src)
    except InvalidStream as e:
        if str(e) != "not an encpipe file" or not seekable(src):
            raise
        from .legacy import legacy_hint

        raise InvalidStream(str(e), hint=legacy_hint(src)) from None


def signing_keys(args, io, data_from_stdin=False):
    files, commands = args.get("--sign-key") or [], args.get("--sign-key-command") or []
    _refuse_stdin_secrets(KeySources(key_files=files), data_from_stdin)
    return loader(args, io).signing_keys(files, commands) if files or commands else []


def signers(args, io):
    """The verify keys of --signer and --signer-file, else of ENCPIPE_SIGNER."""
    return load_signers(args.get("--signer") or [], args.get("--signer-file") or [], io.env)


def seal_chunking(args, from_pipe, load=True):
    """(chunk_log2, worker threads) of a seal: --chunk-size, else the pipe's or the file's default;
    the cipher library loaded (unless not `load`: then its caller loads it before the seal)."""
    chunk = chunk_log2(args["--chunk-size"])
    if chunk is None:
        chunk = fmt.PIPE_CHUNK_LOG2 if from_pipe else fmt.FILE_CHUNK_LOG2
    if load or not from_pipe:  # from a pipe, the thread count needs no library (one thread)
        aead.library()
    return chunk, threads(args, 1 << chunk, pipe_end=from_pipe)


def cmd_seal(args, io):
    from . import envelope  # here, as in each command that reads or writes a sealed file: keyid needs none

    sources = key_sources(args)
    _refuse_stdin_secrets(sources, True, hint="seal reads the data from standard input: give the secret from a file")
    chunk, workers = seal_chunking(args, from_pipe=not seekable(io.stdin))
    path = args["--output"]
    if not path:
        ciphertext_output(io)
    refuse_output_over_secret(path, args)
    _input_readable(io.stdin)
    recipients = load_keys(loader(args, io), args, sources, sealing=True)
    signed_by = signing_keys(args, io, data_from_stdin=True)
    size = args.get("--size")
    total = int_option(size, "--size", 0, 1 << 62) if size is not None else input_size(io.stdin)
    reporter = progress(args, io, "seal", total)

    def write(out):
        envelope.seal(
            io.stdin, out, recipients, chunk_log2=chunk, threads=workers, on_progress=reporter, signing_keys=signed_by
        )

    if path:  # once FILE is renamed into place, a signal no longer stops seal: it is done (0)
        from . import safefile  # here: inspect, keyid and open write no file

        safefile.write_output(path, write, allow_shared=args["--allow-shared-dir"], committed=hold_for_good)
    else:
        write(io.stdout)
    _finish(reporter)
    return 0


def _input_readable(src):
    """IOFailure (74) before anything is written for a standard input that cannot be
    read (closed, or open for writing only): seal wrote its header, then failed."""
    try:
        src.read(0)
    except OSError as e:
        raise IOFailure(f"cannot read input: {e.strerror or e}") from None


def _identities(args, io, data_from_stdin, **hint):
    sources = key_sources(args)
    _refuse_stdin_secrets(sources, data_from_stdin, **hint)
    return load_keys(loader(args, io), args, sources, sealing=False)


def cmd_open(args, io):
    from . import envelope

    thread_option(args)  # a malformed --threads is a usage error before anything is read
    src = open_input(args["FILE"], io, prompt=args["--passphrase"])
    from_stdin = reads_stdin(args["FILE"])
    if args["--legacy"]:
        from . import legacy

        _refuse_signers(args, io)
        sources = key_sources(args)
        _refuse_stdin_secrets(sources, from_stdin)
        legacy.open_legacy(src, io.stdout, legacy.load_keys(loader(args, io), sources, io.env))
        return 0
    sealed = read_sealed_header(src)
    aead.library()
    workers = threads(args, sealed.header.chunk_size, pipe_end=is_pipe(io.stdout))
    identities = _identities(args, io, from_stdin)
    trusted = signers(args, io)
    reporter = progress(args, io, "open", plaintext_total(sealed, src), TwoPassReporter)
    info = envelope.open_sealed(
        sealed,
        src,
        io.stdout,
        identities,
        threads=workers,
        verify_first=args["--verify-first"],
        signers=trusted,
        on_progress=reporter,
        on_check=reporter and reporter.check,
        require_maker=args["--refuse-unauthenticated"],
        named=not from_stdin,  # a FIFO under a file's name: checked whole first, as a file is
    )
    _finish(reporter)
    _warn_forgeable(io, sealed, info)
    return 0


def _refuse_signers(args, io):
    if signers(args, io):
        raise NotSigned("not signed by a trusted signer: files of the previous tool carry no signature")


def _warn_forgeable(io, sealed, info):
    if sealed.header.version < 2:
        io.warn("a version 1 file: the holder of any of its keys can make such a file",
                hint="re-seal a file you trust (open | seal): a version 2 file says who made it")
    elif not info.provenance.sender_authenticated:
        io.warn(
            "opened with an x25519 identity: anyone with its public key can make such a file",
            hint="check who made it with --signer",
        )


def cmd_inspect(args, io):
    from . import envelope
    from . import provenance as prov
    from .report import header_report, print_report

    thread_option(args)  # a malformed --threads is a usage error before anything is read
    src = open_input(args["FILE"], io, "inspect", prompt=args["--passphrase"])
    if args["--legacy"]:
        from . import legacy

        _refuse_signers(args, io)
        keys, sources = None, key_sources(args)
        if args["--verify"]:
            _refuse_stdin_secrets(sources, reads_stdin(args["FILE"]))
            keys = legacy.load_keys(loader(args, io), sources, io.env)
        print_report(io, args["--json"], legacy.inspect_legacy(src, keys))
        return 0
    sealed = read_sealed_header(src)
    report = header_report(sealed)
    if args["--verify"]:
        aead.library()
        workers = threads(args, sealed.header.chunk_size)
        identities = _identities(args, io, reads_stdin(args["FILE"]))
        trusted = signers(args, io)
        reporter = progress(args, io, "verify", plaintext_total(sealed, src))
        info = envelope.open_sealed(
            sealed, src, None, identities, threads=workers, signers=trusted, on_progress=reporter
        )
        _finish(reporter)
        report.update(verified=True, plaintext_bytes=info.plaintext_bytes, chunks=info.chunks)
        report["payload_bytes"] = info.chunks * fmt.TAG_LEN + info.plaintext_bytes
        report.update(info.provenance.report() if sealed.header.version >= 2 else {})
        print_report(io, args["--json"], report)
        return 0
    remaining, tail = prov.read_to_trailer(src, sealed)
    report["payload_bytes"] = remaining - len(tail)
    if sealed.header.version >= 2:
        report["signers"] = prov.trailer_signers(sealed, tail)
    shape = fmt.payload_shape(report["payload_bytes"], sealed.header.chunk_size)
    if not shape:
        raise InvalidStream(
            f"truncated or corrupt: a payload of {report['payload_bytes']} bytes cannot be a complete stream"
            f" of {sealed.header.chunk_size}-byte chunks",
            hint="nothing was authenticated (not verified); inspect --verify with a key finds the first bad chunk",
        )
    report.update(plaintext_bytes=shape[0], chunks=shape[1])
    print_report(io, args["--json"], report)
    return 0


def cmd_rewrap(args, io):
    from . import envelope

    path = args["--in-place"]
    if not all(_KEY_ID.fullmatch(value) for value in args["--remove"]):  # a key typed in its place: not shown
        raise UsageError("--remove takes a key id, 16 hex digits as `encpipe keyid` prints it (the value is not shown)")
    from . import safefile  # here, as for seal -o

    # a key or passphrase typed in FILE's place (it names no file) is not shown, as open's FILE
    src, before = safefile.open_source(path, shown=shown_name(path)) if path else (open_input(None, io, "rewrap"), None)
    src = bounded.as_found(src, path) if path else src  # read as it was: a file that grows is refused (65)
    identities = _identities(args, io, path is None, hint="rewrap a file with --in-place FILE, or give the secret from a file")
    signed_by, trusted = signing_keys(args, io, data_from_stdin=path is None), signers(args, io)
    add_sources = KeySources(
        key_files=secret_paths(args, "--add-key-file"),
        recipients=args["--add-recipient"],
        passphrase_files=secret_paths(args, "--add-passphrase-file"),
    )
    additions = loader(args, io).load(add_sources, sealing=True, use_env=False, recipient_option="--add-recipient") \
        if add_sources.any_given() else []
    total = input_size(src)
    reporter = progress(args, io, "rewrap", total, TwoPassReporter)
    on_progress, on_check = reporter, reporter and reporter.check
    if reporter and total is not None:
        on_progress, on_check = _whole_file(reporter, src), _whole_file(reporter.check, src)
    rewrap = dict(
        add=additions,
        remove_ids=args["--remove"],
        replace_all=args["--replace"],
        on_progress=on_progress,
        on_check=on_check,
        signing_keys=signed_by,
        signers=trusted,
    )
    if path is None:
        out = ciphertext_output(io, to_file="--in-place FILE")
        envelope.rewrap(src, out, identities, check_first=True, **rewrap)  # nothing out before all is checked
    else:
        from .inplace import links_left, rewrap_keeps

        with src:
            safefile.write_atomically(path, lambda out: envelope.rewrap(src, out, identities, **rewrap),
                                      replaces=before, allow_shared=args["--allow-shared-dir"],
                                      committed=hold_for_good,  # FILE rewrapped: 0, whatever signal comes now
                                      **rewrap_keeps(src.fileno(), before, path))  # its owner, mode, ACL, time
        if left := links_left(path, before.st_nlink, "rewrap"):
            io.warn(left)
    _finish(reporter)
    return 0


def _whole_file(report, src):
    """rewrap reports payload bytes; count from the file's start instead, header
    included, so that the total (the file's size) is reached."""
    start = src.tell()
    return lambda _payload_bytes: report(src.tell() - start)


def cmd_pubkey(args, io):
    path = args["FILE"]
    keys = parse_keyring(decode_text(read_secret_file(path, io.warn), path), path)
    publics = [str(k.recipient() if hasattr(k, "recipient") else k.verify_key)
               for k in keys if hasattr(k, "recipient") or hasattr(k, "verify_key")]
    if not publics:
        raise UsageError(f"{path}: no x25519 identity or signing key found")
    io.print("\n".join(publics))
    return 0


def cmd_keyid(args, io):
    sources = key_sources(args)
    keys = [k.verify_key for k in signing_keys(args, io)]
    keys += signers(args, io) if args["--signer"] or args["--signer-file"] else []
    if sources.any_given() or not keys:  # identities as their public keys; else the environment
        keys += load_keys(loader(args, io), args, sources, sealing=True)
    ids = [k.key_id.hex() for k in keys if not isinstance(k, Passphrase)]
    if not ids:
        raise UsageError("passphrases have no key id")
    io.print("\n".join(ids))
    return 0


COMMANDS = {
    "seal": cmd_seal,
    "open": cmd_open,
    "inspect": cmd_inspect,
    "rewrap": cmd_rewrap,
    "keygen": keygen.cmd_keygen,
    "pubkey": cmd_pubkey,
    "keyid": cmd_keyid,
}
