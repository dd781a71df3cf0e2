# Sourced by scripts/test and scripts/encpipe-demo (after venv.bash, whose
# no_secrets it uses): the Debian packages they install when run as root.
# Uses PROG for its messages.

# venv_missing: whether python3 cannot make a virtual environment with pip
# (Debian ships Python's ensurepip apart, in python3-venv).
venv_missing() {
  ! no_secrets python3 -c 'import ensurepip, venv' >/dev/null 2>&1
}

# may_install: whether Debian packages can be installed here (root, apt-get).
may_install() {
  ((EUID == 0)) && command -v apt-get >/dev/null
}

# debian_install PACKAGE...: apt-get update, then apt-get install PACKAGEs, their
# output on standard error. PostgreSQL's packages make no default cluster while
# they are installed (a throwaway one is started where one is needed); the
# setting is removed afterwards unless it was there before, so later installs
# on the machine make theirs as usual.
debian_install() {
  local setting=/etc/postgresql-common/createcluster.d/no-main-cluster.conf made="" status=0
  printf '%s: installing Debian packages: %s\n' "${PROG}" "$*" >&2
  if [[ " $* " == *" postgresql"* && ! -e "${setting}" ]]; then
    mkdir -p "${setting%/*}"
    printf 'create_main_cluster = false\n' >"${setting}"
    made=1
  fi
  DEBIAN_FRONTEND=noninteractive no_secrets apt-get update -q >&2 \
    && DEBIAN_FRONTEND=noninteractive no_secrets apt-get install -y -q --no-install-recommends "$@" >&2 \
    || status=$?
  if [[ -n "${made}" ]]; then rm -f -- "${setting}"; fi
  return "${status}"
}
