# Sourced by scripts/test and scripts/encpipe-demo: the checkout's private
# virtual environment, .venv/ (git-ignored), made and filled once. Never
# touches the system Python. Uses PROG for its messages.

# Ctrl-C (SIGINT) during the set-up ends the script that sourced this file, by that
# signal: without the trap, bash went on when a child took SIGINT as an ordinary
# failure (pip's "Operation cancelled by user"), and the demo ran its whole tour, exit 0
# (tests/test_setup_interrupt.py). `exec` at the end restores SIGINT's default action.
interrupted() {
  trap - INT
  kill -INT "$$"
}
trap interrupted INT

# no_secrets COMMAND [ARG...]: runs COMMAND without the secret variables of encpipe/childenv.py
# (tests/test_child_env.py fails when one is left set) nor descriptors above 2: none of
# the set-up's children (probes, venv, pip, cat, grep...) needs one.
no_secrets() {
  (
    unset ENCPIPE_KEY ENCPIPE_PASSPHRASE BACKUP_ENCRYPTION_KEY PGPASSWORD "${!RCLONE_@}" "${!AWS_@}" \
      "${!GOOGLE_@}" "${!AZURE_@}" "${!OS_@}" ST_KEY \
      VAULT_TOKEN OP_SERVICE_ACCOUNT_TOKEN OP_CONNECT_TOKEN "${!OP_SESSION@}" BW_SESSION BW_CLIENTSECRET \
      SOPS_AGE_KEY DOPPLER_TOKEN
    local fd
    for fd in /proc/self/fd/*; do
      fd="${fd##*/}"
      if ((fd > 2)); then eval "exec ${fd}<&-"; fi
    done
    exec "$@"
  )
}

# venv_python: prints the Python that makes .venv: ENCPIPE_VENV_PYTHON when set;
# else /usr/bin/python3 when it is 3.9 or later and can make one (python3-venv):
# README's interpreter on Debian, one every user can run (postgres cannot run a
# pyenv python3 under /root), and an optimised build (PGO, LTO: less CPU for the
# suite's thousands of Python processes, README); else python3 from PATH.
venv_python() {
  if [[ -n "${ENCPIPE_VENV_PYTHON:-}" ]]; then
    printf '%s\n' "${ENCPIPE_VENV_PYTHON}"
  elif [[ -x /usr/bin/python3 ]] && no_secrets /usr/bin/python3 -I -c \
    'import sys, ensurepip, venv; sys.exit(sys.version_info < (3, 9))' >/dev/null 2>&1; then
    printf '%s\n' /usr/bin/python3
  else
    printf '%s\n' python3
  fi
}

# Every Python the set-up starts runs isolated (-I): -c and -m put the working directory
# first on the module path, and a Crypto.py, venv.py or importlib/ another user left in
# /tmp ran as the user (as root, before apt-get) when the demo was started from there
# (tests/test_child_working_directory.py). -I also leaves out PYTHONPATH and the user's
# site-packages: a Python that has encpipe's dependencies only there gets .venv.

# deps_importable PYTHON: whether PYTHON can import pycryptodome and docopt-ng
# (not docopt 0.6, which has the same module name).
deps_importable() {
  no_secrets "$1" -I -c 'import Crypto.Cipher.AES
from docopt import docopt
docopt("Usage: x", argv=[], default_help=False)' >/dev/null 2>&1
}

# fast_importable PYTHON: the `fast` extra, cryptography with AESGCM.encrypt_into (47 or later).
fast_importable() {
  no_secrets "$1" -I -c 'from cryptography.hazmat.primitives.ciphers.aead import AESGCM
AESGCM.encrypt_into' >/dev/null 2>&1
}

# venv_here ROOT: whether ROOT/.venv was made there and its python runs pip.
venv_here() {
  no_secrets "$1/.venv/bin/python" -I -m pip --version >/dev/null 2>&1 && venv_made_here "$1"
}

# venv_made_here ROOT: whether the python that ROOT/.venv's pip command starts (its
# #! line, or distlib's /bin/sh trampoline for a path with a space) is ROOT/.venv's;
# in a checkout copied with `cp -a`, it and every command in .venv/bin are the
# original checkout's. (Without starting pip: a .venv its stamp says was installed
# had a pip that ran.)
venv_made_here() {
  no_secrets "$1/.venv/bin/python" -I -c '
import os, re, sys
bin = os.path.join(sys.argv[1], ".venv", "bin")
with open(os.path.join(bin, "pip"), "rb") as command:
    head = command.read(1024).decode()
python = re.match(r"#!/bin/sh\n\x27\x27\x27exec\x27 \"([^\"]+)\"|#!(.+)\n", head)
sys.exit(not os.path.samefile(os.path.dirname(python[1] or python[2]), bin))' "$1" >/dev/null 2>&1
}

# encpipe_here ROOT: whether ROOT/.venv imports ROOT's encpipe (a copied checkout's
# imported the original's, through the .pth line of its editable install).
encpipe_here() {
  no_secrets "$1/.venv/bin/python" -I -c 'import os, sys, encpipe
sys.exit(not os.path.samefile(os.path.dirname(encpipe.__file__), os.path.join(sys.argv[1], "encpipe")))' \
    "$1" >/dev/null 2>&1
}

# stamp_covers STAMP HASH EXTRAS: whether a line of STAMP ("HASH [EXTRAS] compat")
# records an install for HASH with every one of EXTRAS (comma-separated): the test
# command's [test,fast] covers the demo's [fast] (before, the demo installed again).
stamp_covers() {
  local line got extra
  local -a wanted
  IFS=, read -r -a wanted <<<"$3"
  [[ -r "$1" ]] || return 1
  while IFS= read -r line; do
    [[ "${line}" == "$2 ["*"] compat" ]] || continue
    got="${line#"$2 ["}"
    got=",${got%"] compat"},"
    for extra in "${wanted[@]}"; do
      [[ "${got}" == *",${extra},"* ]] || continue 2
    done
    return 0
  done <"$1"
  return 1
}

# checkout_venv ROOT EXTRAS: makes ROOT/.venv when it is missing (or its pip does
# not run) and installs the checkout into it (editable) with EXTRAS ("" or e.g.
# "test,fast"), unless its stamp (a line per set of extras, keyed on the hash of
# setup.cfg and pyproject.toml, and "compat") says so (stamp_covers), and encpipe
# and its dependencies import.
checkout_venv() {
  local root="$1" extras="$2"
  local venv="${root}/.venv"
  local stamp="${venv}/.encpipe-installed" hash
  hash="$(no_secrets cat -- "${root}/setup.cfg" "${root}/pyproject.toml" | no_secrets sha256sum)"
  hash="${hash%% *}"
  if [[ -x "${venv}/bin/python" ]] && stamp_covers "${stamp}" "${hash}" "${extras}" \
    && venv_made_here "${root}" && encpipe_here "${root}" && deps_importable "${venv}/bin/python"; then
    compile_checkout "${root}"
    return 0
  fi
  printf '%s: installing encpipe%s and its dependencies into %s (once)\n' \
    "${PROG}" "${extras:+[${extras}]}" "${venv}" >&2
  # A .venv whose pip does not run, or made elsewhere (venv_here), is made again
  # (by venv_python): one that `python3 -m venv` left half made (interrupted
  # while ensurepip ran) has a python and no pip. What
  # venv says is shown when it failed (Debian's word that python3-venv is
  # missing), not when Ctrl-C ended it (its traceback; the trap above ends us).
  # One another user made (root's after `sudo scripts/encpipe-demo` in one's own clone)
  # can be neither used nor removed: said so, not hinted at python3-venv.
  if [[ -e "${venv}" && ! -w "${venv}" ]]; then
    cannot_replace "${root}"
    return 1
  fi
  local said
  if ! venv_here "${root}" \
    && ! said="$(no_secrets "$(venv_python)" -I -m venv --clear -- "${venv}" 2>&1)"; then
    [[ -z "${said}" ]] || printf '%s\n' "${said}" >&2
    if ! no_secrets rm -rf -- "${venv}" 2>/dev/null; then
      cannot_replace "${root}"
      return 1
    fi
    printf '%s: error: cannot create a Python virtual environment\n' "${PROG}" >&2
    if venv_missing; then
      printf '%s: hint: on Debian or Ubuntu: apt-get install python3-venv\n' "${PROG}" >&2
    fi
    return 1
  fi
  # editable_mode=compat: the checkout on sys.path through a .pth line; setuptools'
  # default, an import finder, costs every Python the venv starts (each encpipe,
  # each script) about 10 ms of imports (pathlib, re) before its first line.
  if ! PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 no_secrets "${venv}/bin/python" -I -m pip install -q \
    --config-settings editable_mode=compat -e "${root}${extras:+[${extras}]}" >&2; then
    printf '%s: error: pip could not install encpipe into %s\n' "${PROG}" "${venv}" >&2
    return 1
  fi
  printf '%s [%s] compat\n' "${hash}" "${extras}" >>"${stamp}"
  compile_checkout "${root}"
}

# venv_missing: whether venv_python cannot make a virtual environment with pip
# (Debian ships Python's ensurepip apart, in python3-venv).
venv_missing() {
  ! no_secrets "$(venv_python)" -I -c 'import ensurepip, venv' >/dev/null 2>&1
}

# cannot_replace ROOT: the error that ROOT/.venv can be neither written nor removed,
# naming its owner, and the hint to remove it (with ROOT/encpipe/__pycache__ when
# that is not writable either: root's bytecode, which Python then neither reads
# nor writes again).
cannot_replace() {
  local venv="$1/.venv" cache="$1/encpipe/__pycache__" owner
  local -a remove=("${venv}")
  owner="$(no_secrets stat -c %U -- "${venv}" 2>/dev/null)" || owner="another user"
  if [[ -e "${cache}" && ! -w "${cache}" ]]; then remove+=("${cache}"); fi
  printf '%s: error: cannot create a Python virtual environment: cannot replace %s (owned by %s)\n' \
    "${PROG}" "${venv}" "${owner}" >&2
  printf '%s: hint: remove it as its owner, then run again: sudo rm -rf --%s\n' \
    "${PROG}" "$(printf ' %q' "${remove[@]}")" >&2
}

# compile_checkout ROOT: the bytecode of ROOT/encpipe, as a regular install writes it
# (an editable one does not; PYTHONDONTWRITEBYTECODE keeps runs from writing it), so
# that no encpipe process compiles its modules again. A stale file is never used.
compile_checkout() {
  no_secrets "$1/.venv/bin/python" -I -m compileall -q "$1/encpipe" >/dev/null 2>&1 || true
}

# warm_test_bytecode ROOT: pytest keeps each test module's rewritten asserts in
# tests/__pycache__, but not under PYTHONDONTWRITEBYTECODE nor before a first run:
# each pytest-xdist worker of a fresh clone rewrote every one (9.4 CPU s a
# collection, 2.4 s from the cache). One collection writes it first; its failure
# is the run's to say.
warm_test_bytecode() {
  (cd -- "$1" && no_secrets env -u PYTHONDONTWRITEBYTECODE "$1/.venv/bin/python" -m pytest -q \
    --collect-only -p no:xdist >/dev/null 2>&1) || true
}
