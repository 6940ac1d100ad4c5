#!/usr/bin/env bash
# Idempotent set-up for a fresh machine: Debian packages, the backend's venv (.venv) and,
# with --label-studio, Label Studio 1.23.2 in its own venv (.venv-ls), as in production.
# Re-running is cheap: each step is skipped when its inputs have not changed.
set -euo pipefail
cd "$(dirname "$0")/.."

want_ls=0
for arg in "$@"; do
  case "$arg" in
    --label-studio) want_ls=1 ;;
    *) echo "setup.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

PYTHON=${PYTHON:-python3}
LS_VERSION=1.23.2
APT_PACKAGES=(redis-server dataset-fashion-mnist chromium)  # chromium: status page test

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
# pip is chatty (one warning per local index entry here): keep its output in a log, show the
# tail only when it fails.
pip_quiet() {
  local venv=$1; shift
  mkdir -p .work
  if ! "$venv/bin/pip" install -q "$@" > .work/pip.log 2>&1; then
    tail -n 30 .work/pip.log >&2
    log "pip install $* failed; full log in .work/pip.log"
    return 1
  fi
}

# --- Debian packages -------------------------------------------------------------------------
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    log "installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    log "WARNING: no apt-get; install ${missing[*]} yourself (redis-server for the queue tests,"
    log "         dataset-fashion-mnist for the demo and dataset tests)"
  fi
fi

# --- the backend's venv ----------------------------------------------------------------------
# Torch: on x86_64 + CPython 3.11 this machine kind serves torch 2.14.1 / torchvision 0.29.1
# from local disk (the only pair that imports together there). Elsewhere let pip resolve,
# or set TORCH_SPEC, e.g. TORCH_SPEC="torch==2.9.1 torchvision==0.24.1".
if [ ! -x .venv/bin/python ]; then
  log "creating .venv with $($PYTHON --version)"
  $PYTHON -m venv .venv
fi
pyver=$(.venv/bin/python -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
if [ -z "${TORCH_SPEC:-}" ]; then
  if [ "$(uname -m)" = x86_64 ] && [ "$pyver" = 3.11 ]; then
    TORCH_SPEC="torch==2.14.1 torchvision==0.29.1"
  else
    TORCH_SPEC="torch torchvision"
  fi
fi
stamp=.venv/.smartsize-stamp
inputs=$(cat pyproject.toml scripts/setup.sh; echo "$TORCH_SPEC")
digest=$(printf '%s' "$inputs" | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$digest" ]; then
  log "installing torch ($TORCH_SPEC); the first time this takes a few minutes"
  # shellcheck disable=SC2086
  pip_quiet .venv $TORCH_SPEC
  log "installing smartsize with its dev and text extras"
  pip_quiet .venv -e ".[dev,text]"
  echo "$digest" > "$stamp"
else
  log ".venv is up to date"
fi

# --- Label Studio, in its own venv -----------------------------------------------------------
if [ "$want_ls" = 1 ]; then
  if ! .venv-ls/bin/python -c "import label_studio, sys; sys.exit(label_studio.__version__ != '$LS_VERSION')" 2>/dev/null; then
    log "installing label-studio==$LS_VERSION into .venv-ls (about a minute)"
    [ -x .venv-ls/bin/python ] || $PYTHON -m venv .venv-ls
    pip_quiet .venv-ls "label-studio==$LS_VERSION"
  else
    log ".venv-ls has label-studio $LS_VERSION"
  fi
fi
