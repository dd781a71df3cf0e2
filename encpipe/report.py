"""inspect's report: what the header says, what was counted, and what was checked."""

from . import envelope
from . import format as fmt


def header_report(sealed):
    header = sealed.header
    return {
        "format": "encpipe",
        "version": header.version,
        "suite": fmt.SUITE_NAMES[header.suite],
        "chunk_size": header.chunk_size,
        "header_bytes": sealed.size,
        "payload_bytes": None,
        "plaintext_bytes": None,
        "chunks": None,
        "verified": False,
        "sender_authenticated": False if header.version < 2 else None,
        "slots": [slot.describe() for slot in sealed.slots],
    }


NOT_VERIFIED = "header and length only: not verified (use --verify with a key to authenticate every chunk)"


def print_report(io, as_json, report):
    """The report as JSON or as lines; either says what was checked."""
    legacy = report.get("format") == "legacy"  # no chunks: one tag over the whole payload
    if report.get("verified"):
        report["checked"] = "the whole file (one tag): verified" if legacy else "every chunk: verified"
    else:
        report["checked"] = NOT_VERIFIED.replace("every chunk", "the file") if legacy else NOT_VERIFIED
    if as_json:
        io.print_json(report)
        return
    # booleans as yes or no in the lines, not Python's True and False (JSON keeps true, false)
    shown = {k: ", ".join(v) if isinstance(v, list) else ("yes" if v else "no") if isinstance(v, bool) else v
             for k, v in report.items() if k not in ("slots", "verified")}
    shown = {k: v for k, v in shown.items() if v not in (None, "")}
    lines = [f"{k.replace('_', ' ')}: {v}" for k, v in shown.items()]
    lines += [f"slot {i}: {envelope.slot_label(d)}" for i, d in enumerate(report.get("slots", []), 1)]
    io.print("\n".join(lines))
