"""What `encpipe inspect` reports: a header's fields, and how they print."""

from . import envelope
from . import format as fmt


def report_header(sealed):
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


def print_report(io, as_json, report):
    if as_json:
        io.print_json(report)
        return
    shown = {k: ", ".join(v) if isinstance(v, list) else v for k, v in report.items() if k != "slots"}
    lines = [f"{k.replace('_', ' ')}: {v}" for k, v in shown.items() if v not in (None, "")]
    lines += [f"slot {i}: {envelope.slot_label(d)}" for i, d in enumerate(report.get("slots", []), 1)]
    io.print("\n".join(lines))
