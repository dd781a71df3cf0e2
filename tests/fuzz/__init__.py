"""Fuzzing harness and hostile-input helpers (see fuzz_encpipe.py and run)."""
