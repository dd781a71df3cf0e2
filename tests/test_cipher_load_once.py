"""The cipher library is imported by one thread at a time (aead.library).

encpipe-backup seals the dump and the globals in two threads, and the first seal
of each loaded the library: two imports of `cryptography` at once. Under an
address-space limit (tests/test_exhaustion.py, about one run in twenty at 55 MiB)
the two hung for ever, the globals' thread inside the Rust module's
initialisation and the dump's waiting for its module lock. Here the load is made
slow, and two threads ask for the library at once: one loads it, the other waits
and takes what it loaded; never two loads at once, nor two loads."""

import threading
import time

from encpipe import aead


def test_two_threads_asking_at_once_load_the_library_once(monkeypatch):
    loading, most, loads = [0], [0], []

    def slow_unusable(chosen):
        loading[0] += 1
        most[0] = max(most[0], loading[0])
        time.sleep(0.2)
        loads.append(chosen)
        loading[0] -= 1
        return None

    monkeypatch.setattr(aead, "_unusable", slow_unusable)
    monkeypatch.setattr(aead, "_usable", {})
    got = []
    threads = [threading.Thread(target=lambda: got.append(aead.library())) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert most[0] == 1 and len(loads) == 1
    assert got == [aead.name()] * 3


def test_two_threads_making_a_curve_class_at_once_import_it_once(monkeypatch):
    """So for the curve arithmetic (x25519.py, signing.py: aead.made_once), which
    a remote listing's threads reach at once (an identity's slot, a signature)."""
    loading, most, made = [0], [0], []

    class Slow:
        def __init__(self):
            loading[0] += 1
            most[0] = max(most[0], loading[0])
            time.sleep(0.2)
            made.append(self)
            loading[0] -= 1

    kept = {}
    got = []
    threads = [threading.Thread(target=lambda: got.append(aead.made_once(kept, dict.fromkeys(aead.NAMES, Slow))))
               for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert most[0] == 1 and len(made) == 1 and got == made * 3
