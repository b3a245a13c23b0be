# Sourced by ./run, ./test and .ci/run: the project's virtual environment, .venv, holding
# requirements.txt. It is created only when missing, and the requirements are installed only
# when requirements.txt changed since the last install (its hash is kept in .venv). Nothing is
# ever installed into the system's Python, which Debian refuses anyway (PEP 668).
# PYTHON names the interpreter that creates .venv (default python3, 3.11 or newer).

slotbook_venv() {
  local root venv python stamp wanted
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  venv="$root/.venv"
  stamp="$venv/.requirements.sha256"
  if [ ! -x "$venv/bin/python" ] || [ ! -x "$venv/bin/pip" ]; then
    python="${PYTHON:-python3}"
    if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "Slotbook needs Python 3.11 or newer as '$python' (set PYTHON to another interpreter)." >&2
      return 1
    fi
    echo "== creating the virtual environment .venv with $("$python" --version 2>&1)" >&2
    rm -rf "$venv"
    if ! "$python" -m venv "$venv"; then
      rm -rf "$venv"
      echo "Could not create .venv. On Debian or Ubuntu: apt-get install python3-venv" >&2
      return 1
    fi
  fi
  wanted="$("$venv/bin/python" -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$root/requirements.txt")"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    echo "== installing requirements.txt into .venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$root/requirements.txt"
    echo "$wanted" >"$stamp"
  fi
}

slotbook_venv
