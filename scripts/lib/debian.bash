# Sourced by scripts/test and scripts/encpipe-demo (after venv.bash, whose
# no_secrets it uses): the Debian packages they install when run as root.
# Uses PROG for its messages.

# may_install: whether Debian packages can be installed here (root, apt-get).
may_install() {
  ((EUID == 0)) && command -v apt-get >/dev/null
}

# The setting debian_install made, removed by a signal's trap too.
DEBIAN_SETTING=""

# debian_signalled SIGNAL: the setting removed, then this shell ends by SIGNAL (bash
# runs the trap once the child it waits for, apt-get, has ended).
debian_signalled() {
  if [[ -n "${DEBIAN_SETTING}" ]]; then no_secrets rm -f -- "${DEBIAN_SETTING}"; fi
  trap - "$1"
  kill -"$1" "$$"
}

# debian_install PACKAGE...: apt-get update, then apt-get install PACKAGEs, their
# output on standard error. PostgreSQL's packages make no default cluster while
# they are installed (a throwaway one is started where one is needed); the
# setting is removed afterwards unless it was there before, so later installs
# on the machine make theirs as usual; so it is when SIGINT, SIGTERM or SIGHUP
# ends the script meanwhile (before, it stayed: tests/test_debian_install.py).
debian_install() {
  local setting=/etc/postgresql-common/createcluster.d/no-main-cluster.conf status=0 traps
  printf '%s: installing Debian packages: %s\n' "${PROG}" "$*" >&2
  if [[ " $* " == *" postgresql"* && ! -e "${setting}" ]]; then
    traps="$(trap -p INT TERM HUP)"
    trap 'debian_signalled INT' INT
    trap 'debian_signalled TERM' TERM
    trap 'debian_signalled HUP' HUP
    DEBIAN_SETTING="${setting}"
    no_secrets mkdir -p -- "${setting%/*}"
    printf 'create_main_cluster = false\n' >"${setting}"
  fi
  DEBIAN_FRONTEND=noninteractive no_secrets apt-get update -q >&2 \
    && DEBIAN_FRONTEND=noninteractive no_secrets apt-get install -y -q --no-install-recommends "$@" >&2 \
    || status=$?
  if [[ -n "${DEBIAN_SETTING}" ]]; then
    no_secrets rm -f -- "${DEBIAN_SETTING}"
    DEBIAN_SETTING=""
    trap - INT TERM HUP
    eval "${traps}"  # the script's own again (venv.bash's for SIGINT)
  fi
  return "${status}"
}

# debian_install_or_say KIND PACKAGE...: debian_install; when apt-get fails, one line
# of KIND naming the packages, "warning" (the demo goes on without them) or "error"
# (scripts/test stops: before, it ended with apt-get's status and no word of its
# own), and a hint; status 1.
debian_install_or_say() {
  local kind="$1" status=0 then=""
  shift
  debian_install "$@" || status=$?
  ((status != 0)) || return 0
  if [[ "${kind}" == warning ]]; then then="; going on without"; fi
  printf '%s: %s: apt-get could not install %s (status %d)%s\n' "${PROG}" "${kind}" "$*" "${status}" \
    "${then}" >&2
  printf "%s: hint: apt-get's messages above say why (no network, or another apt-get running?)\n" "${PROG}" >&2
  return 1
}

# present PACKAGE [CHECK...]: whether PACKAGE is there.
present() {
  local package="$1" check
  shift
  if (($# == 0)); then
    dpkg-query -W -f='${Status}' "${package}" 2>/dev/null | grep -q 'install ok installed'
    return
  fi
  for check in "$@"; do
    if [[ "${check}" == /* ]]; then
      [[ -e "${check}" ]] || return 1
    else
      command -v -- "${check}" >/dev/null 2>&1 || return 1
    fi
  done
}
