#!/usr/bin/env bash
# Image build check: builds the api and worker targets of the Dockerfile on a local Docker
# daemon, with local base images, a local ComfyUI repository and stand-in weights, reports
# the build-time self-test, then starts the api image and checks /healthz. Not run in CI: it
# needs a Docker daemon, ~4 minutes cold on 2 cores with a fast PyPI link (up to ~30 where
# downloads are slow). `scripts/check_image.sh --help` says how.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/check_image.sh [--keep-work] [--work-dir DIR] [-- EXTRA BUILD OPTIONS...]

Builds the Dockerfile's `api` and `worker` targets on a Docker daemon you provide, with:
  - base images you built locally (nothing is pulled from a registry: the script checks that
    BASE_IMAGE and PYTHON_IMAGE are already in the daemon's image store before it builds);
  - ComfyUI from a repository you serve (COMFYUI_REPO / COMFYUI_COMMIT);
  - stand-in weights: the test helpers (tests/fakes/worker_stack.py build_tiny_models, run
    with .venv/bin/python) write tiny models in the real formats plus a models.lock for them,
    and the real u2netp from the checkout's models/ when `bash scripts/bootstrap.sh` fetched
    it. They are served to the weights stages through the folder mirror
    (`--build-context models-mirror=DIR --build-arg MODELS_MIRROR=/mirror`).
Then it reports the self-test that the `selftest` stage ran during the build, starts the api
image on a fresh volume (its entry point migrates and creates the callback key), checks
GET /healthz, and removes the containers and the volume it made. Every step is timed.

What the self-test proves here: the BiRefNet stand-in has RANDOM weights, so the worker is
built with SELFTEST_SEGMENTERS=u2netp: the self-test checks u2netp's quality cases on the
real u2netp weights, and the deterministic object_remove and upscale_2k cases. BiRefNet's
files are checked by size and sha256 and its code's imports resolved (runtime stage), and
after the build this script loads it in the worker image (offline, on the CPU): the loader and
the baked layout are exercised, its quality is NOT checked (the self-test runs with warm-up
off and never loads a segmenter it does not check). A release build leaves
SELFTEST_SEGMENTERS empty (every segmenter).

The build context is a scratch copy of the checkout (tracked and untracked, not ignored
files) whose models.lock is replaced by the stand-ins' lock, and the Dockerfile is a copy
without its `# syntax=docker/dockerfile:...` line (that frontend image would be pulled from
Docker Hub; every feature used is in BuildKit's built-in frontend). The checkout itself is
not changed.

Environment (required):
  BASE_IMAGE       local stand-in for the CUDA base: Ubuntu 24.04 (python3 is 3.12, which the
                   hashed locks in docker/requirements/ need) with apt sources reachable
  PYTHON_IMAGE     local stand-in for the api stage's python image: `python` and a writable
                   `pip` (Python 3.12) on PATH, groupadd/useradd present
  COMFYUI_REPO     git URL of the ComfyUI repository, e.g. git://127.0.0.1:9418/comfyui-src
  COMFYUI_COMMIT   the commit that COMFYUI_REF resolves to in that repository
Environment (optional):
  DOCKER_HOST      the daemon (e.g. unix:///work/imgcheck/run/docker.sock)
  DOCKER_CONFIG    a docker config folder whose cli-plugins/ holds docker-buildx
  COMFYUI_REF      tag or branch to clone (default: the Dockerfile's, v0.3.64)
  SELFTEST_SEGMENTERS  segmenters the self-test checks (default: u2netp; set it empty only
                   when the BiRefNet weights are real)
  EXTRA_BUILD_ARGS extra `docker buildx build` options for both builds, word-split
                   (e.g. "--build-arg TORCH_INDEX_URL=http://127.0.0.1:3141/simple")
  API_PORT         host port of the api check (default 18080; the container uses the host's
                   network)
  IMAGE_PREFIX     image names: $IMAGE_PREFIX-api:check, $IMAGE_PREFIX-worker:check
                   (default simplypng-check)
  PYTHON           Python with the test dependencies (default .venv/bin/python)
Options:
  --work-dir DIR   scratch folder (default: a new mktemp folder under ${TMPDIR:-/tmp})
  --keep-work      keep the scratch folder (context copy, stand-in weights, build logs)
  -- OPTS...       passed to both `docker buildx build` calls, after EXTRA_BUILD_ARGS

How it was shown to work on a machine that reaches Debian's and Ubuntu's archives and PyPI
but no container registry, GitHub or Hugging Face (2 cores; the daemon's data-root held
15 GB afterwards: 7.5 GB of images, 7.5 GB of build cache). A cold run took 4 minutes there
(api 17 s, worker 211 s of which pip's install of the lock 112 s and the self-test 16 s):

 1. Docker daemon. Debian bookworm's docker.io 20.10 rejects `COPY --link` and
    `RUN --network`, so take trixie's .debs without installing them: a private apt config
    (its own sources.list `deb http://deb.debian.org/debian trixie main`, Dir::State::Lists,
    Dir::Cache, an empty Dir::State::status), then
      APT_CONFIG=apt.conf apt-get update
      APT_CONFIG=apt.conf apt-get download docker.io docker-buildx containerd ubuntu-keyring
      apt-get download runc            # bookworm's: trixie's runc needs glibc 2.38
      for d in *.deb; do dpkg-deb -x "$d" root; done
    docker.io 26.1.5, containerd 1.7.24 and buildx 0.13.1 need only glibc >= 2.34. Start the
    unpacked daemon with a data-root and socket of its own and NO bridge or iptables rules
    (never create a private-range network here):
      PATH=$PWD/root/usr/bin:$PWD/root/usr/sbin:$PATH dockerd \
        --data-root $PWD/docker-data --exec-root $PWD/run/exec \
        --pidfile $PWD/run/dockerd.pid -H unix://$PWD/run/docker.sock \
        --bridge=none --iptables=false --ip6tables=false --ip-forward=false \
        --ip-masq=false --userland-proxy=false --init-path $PWD/root/usr/bin/docker-init &
      export DOCKER_HOST=unix://$PWD/run/docker.sock DOCKER_CONFIG=$PWD/docker-config
      mkdir -p docker-config/cli-plugins
      ln -s $PWD/root/usr/libexec/docker/cli-plugins/docker-buildx docker-config/cli-plugins/
    Every build and run of this script uses --network=host.
 2. BASE_IMAGE. Ubuntu's archive was reachable, so a minimal Ubuntu 24.04 rootfs, its Release
    file checked against the ubuntu-keyring .deb from step 1:
      dpkg-deb -x ubuntu-keyring_*.deb keyring
      debootstrap --variant=minbase \
        --keyring=$PWD/keyring/usr/share/keyrings/ubuntu-archive-keyring.gpg \
        noble rootfs http://archive.ubuntu.com/ubuntu /usr/share/debootstrap/scripts/gutsy
    (bookworm's debootstrap has no `noble` script; Ubuntu's all use `gutsy`). Give it the
    apt sources an ubuntu:24.04 image has (main restricted universe multiverse, for noble,
    noble-updates, noble-security: the base stage installs tini from universe), empty
    /var/lib/apt/lists, then import it:
      tar -C rootfs -c . | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV PIP_CERT=/etc/ssl/imgcheck-ca.crt SSL_CERT_FILE=/etc/ssl/imgcheck-ca.crt REQUESTS_CA_BUNDLE=/etc/ssl/imgcheck-ca.crt' \
        - imgcheck/noble-base:24.04
    It has no CUDA: the torch build check, the lock and the self-test run on the CPU alike.
    Debian bookworm (Python 3.11) or trixie (3.13) bases cannot install the cp312 lock.
 3. CA bundle. This sandbox reaches PyPI through a TLS-intercepting proxy: the host's
    /etc/ssl/certs/ca-certificates.crt was copied into the rootfs as /etc/ssl/imgcheck-ca.crt
    before the import, and the ENV above points pip at it. That is specific to this machine's
    network; elsewhere leave both out.
 4. PYTHON_IMAGE, from BASE_IMAGE with a venv on PATH:
      FROM imgcheck/noble-base:24.04
      RUN apt-get update && apt-get install -y --no-install-recommends python3-venv \
       && rm -rf /var/lib/apt/lists/* && python3 -m venv /usr/local/py
      ENV PATH=/usr/local/py/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
    built with `docker buildx build --network=host -t imgcheck/noble-python:3.12 DIR`.
 5. ComfyUI. GitHub was unreachable; a snapshot of Comfy-Org/ComfyUI at v0.3.64 (a125cd84)
    lacked one large blob (comfy/text_encoders/llama_tokenizer/tokenizer.json, unused by
    these workflows), so its other tracked files were committed into a new local repository
    (`git add -A -f`, tagged v0.3.64: a different commit id) and served read-only:
      git daemon --listen=127.0.0.1 --port=9418 --base-path=DIR --export-all --detach \
        --pid-file=DIR/git-daemon.pid DIR/comfyui-src
      export COMFYUI_REPO=git://127.0.0.1:9418/comfyui-src
      export COMFYUI_COMMIT=$(git -C DIR/comfyui-src rev-parse v0.3.64)
    Where GitHub is reachable, set COMFYUI_REPO=https://github.com/Comfy-Org/ComfyUI.git
    and COMFYUI_COMMIT=a125cd84 (the Dockerfile's defaults).
 6. Run:  scripts/check_image.sh --keep-work
    Stop the daemon afterwards with `kill $(cat run/dockerd.pid)` (its data-root keeps the
    layer cache for the next run) and the git daemon with `kill $(cat DIR/git-daemon.pid)`.

Exit status: 0 when both images built (self-test included) and the api answered /healthz;
non-zero otherwise, with the failing step's log tail.
EOF
}

die() {
  echo "check_image: error: $*" >&2
  exit 1
}

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK_DIR=""
KEEP_WORK=0
EXTRA_OPTS=()
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --keep-work) KEEP_WORK=1 ;;
    --work-dir) [ $# -ge 2 ] || die "--work-dir needs a folder"; WORK_DIR="$2"; shift ;;
    --) shift; EXTRA_OPTS=("$@"); break ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
  shift
done

: "${BASE_IMAGE:?set BASE_IMAGE to a local stand-in for the CUDA base (see --help)}"
: "${PYTHON_IMAGE:?set PYTHON_IMAGE to a local python 3.12 image (see --help)}"
: "${COMFYUI_REPO:?set COMFYUI_REPO to a ComfyUI git URL (see --help)}"
: "${COMFYUI_COMMIT:?set COMFYUI_COMMIT to the commit COMFYUI_REF resolves to (see --help)}"
COMFYUI_REF="${COMFYUI_REF:-}"
SELFTEST_SEGMENTERS="${SELFTEST_SEGMENTERS-u2netp}"
API_PORT="${API_PORT:-18080}"
IMAGE_PREFIX="${IMAGE_PREFIX:-simplypng-check}"
PYTHON="${PYTHON:-${REPO_ROOT}/.venv/bin/python}"
API_IMAGE="${IMAGE_PREFIX}-api:check"
WORKER_IMAGE="${IMAGE_PREFIX}-worker:check"
read -r -a EXTRA_ENV_OPTS <<<"${EXTRA_BUILD_ARGS:-}"

if [ -z "${WORK_DIR}" ]; then
  WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/simplypng-check-image.XXXXXX")"
else
  mkdir -p "${WORK_DIR}"
  WORK_DIR="$(cd "${WORK_DIR}" && pwd)"
fi
LOG_DIR="${WORK_DIR}/logs"
mkdir -p "${LOG_DIR}"
API_CONTAINER="${IMAGE_PREFIX}-api-$$"
API_VOLUME="${IMAGE_PREFIX}-data-$$"
STARTED_CONTAINER=0
STARTED_VOLUME=0
TIMINGS=()
RESULT="FAILED"

cleanup() {
  local rc=$?
  if [ "${STARTED_CONTAINER}" = 1 ]; then
    docker rm -f "${API_CONTAINER}" >/dev/null 2>&1 || true
  fi
  if [ "${STARTED_VOLUME}" = 1 ]; then
    docker volume rm -f "${API_VOLUME}" >/dev/null 2>&1 || true
  fi
  if [ "${KEEP_WORK}" = 1 ]; then
    echo "check_image: scratch folder kept: ${WORK_DIR}"
  else
    rm -rf "${WORK_DIR}"
  fi
  if [ ${#TIMINGS[@]} -gt 0 ]; then
    echo
    echo "== timings"
    printf '  %s\n' "${TIMINGS[@]}"
  fi
  echo "check_image: ${RESULT}"
  exit "${rc}"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

STEP_NAME=""
STEP_START=0
step() {
  STEP_NAME="$1"
  STEP_START=$(date +%s)
  echo
  echo "== $(date -u +%H:%M:%S) ${STEP_NAME}"
}
step_done() {
  local took=$(($(date +%s) - STEP_START))
  TIMINGS+=("$(printf '%-42s %5d s' "${STEP_NAME}" "${took}")")
  echo "-- ${STEP_NAME}: ${took} s"
}
# Runs a logged command; on failure prints the log's tail and fails.
logged() {
  local log="$1"
  shift
  if ! "$@" >"${log}" 2>&1; then
    echo "---- last 60 lines of ${log}" >&2
    tail -n 60 "${log}" >&2
    die "${STEP_NAME} failed (full log: ${log}; --keep-work keeps it)"
  fi
}
# The BuildKit steps of a plain-progress build log that took 5 s or more.
slow_steps() {
  awk '
    /^#[0-9]+ \[/ { id = $1; line = $0; sub(/^#[0-9]+ /, "", line); name[id] = substr(line, 1, 90) }
    /^#[0-9]+ DONE [0-9.]+s$/ { t = $3; sub(/s$/, "", t); if (t + 0 >= 5 && ($1 in name)) printf "    %7.1f s  %s\n", t, name[$1] }
  ' "$1"
}
image_size() {
  docker image inspect -f '{{.Size}}' "$1" | awk '{ printf "%.2f GB (%d bytes)", $1 / 1e9, $1 }'
}

step "preflight"
command -v docker >/dev/null || die "no docker CLI on PATH"
docker version --format 'daemon {{.Server.Version}}' || die "no Docker daemon at ${DOCKER_HOST:-the default socket}"
docker buildx version >/dev/null 2>&1 || die "the docker-buildx plugin is missing (DOCKER_CONFIG/cli-plugins, see --help)"
for image in "${BASE_IMAGE}" "${PYTHON_IMAGE}"; do
  docker image inspect "${image}" >/dev/null 2>&1 \
    || die "${image} is not in the daemon's image store; this check never pulls (see --help)"
done
[ -x "${PYTHON}" ] || die "${PYTHON} not found: run scripts/bootstrap.sh or set PYTHON"
git ls-remote "${COMFYUI_REPO}" >/dev/null || die "cannot read ${COMFYUI_REPO}"
echo "BASE_IMAGE=${BASE_IMAGE} PYTHON_IMAGE=${PYTHON_IMAGE}"
echo "COMFYUI_REPO=${COMFYUI_REPO} COMFYUI_COMMIT=${COMFYUI_COMMIT} COMFYUI_REF=${COMFYUI_REF:-<Dockerfile default>}"
echo "scratch: ${WORK_DIR}"
step_done

step "stand-in weights and lock"
MIRROR="${WORK_DIR}/mirror"
rm -rf "${MIRROR}"
(cd "${REPO_ROOT}" && logged "${LOG_DIR}/weights.log" "${PYTHON}" -c '
import sys
from pathlib import Path

sys.path.insert(0, ".")
from tests.fakes.worker_stack import build_tiny_models

print(build_tiny_models(Path(sys.argv[1])))
' "${MIRROR}")
LOCK="${WORK_DIR}/models.lock"
mv "${MIRROR}/models.lock" "${LOCK}"
if grep -q '"model": "u2netp"' "${LOCK}"; then
  echo "u2netp: the real weights (checkout's models/)"
else
  die "the real u2netp is not in models/: run bash scripts/bootstrap.sh (the self-test needs it)"
fi
(cd "${MIRROR}" && find . -type f -printf '  %10s  %P\n' | sort -k2)
step_done

step "build context"
CONTEXT="${WORK_DIR}/context"
rm -rf "${CONTEXT}"
mkdir -p "${CONTEXT}"
(cd "${REPO_ROOT}" && git ls-files -z --cached --others --exclude-standard \
  | while IFS= read -r -d '' path; do
      if [ -e "${path}" ]; then printf '%s\0' "${path}"; fi
    done \
  | xargs -0 cp --parents -t "${CONTEXT}")
cp "${LOCK}" "${CONTEXT}/models.lock"
# BuildKit's built-in frontend reads the Dockerfile; its pinned syntax image needs Docker Hub.
sed '1{/^# syntax=/d}' "${REPO_ROOT}/Dockerfile" >"${CONTEXT}/Dockerfile.check"
echo "$(du -sh "${CONTEXT}" | cut -f1) copied; models.lock = the stand-ins' lock"
step_done

COMMON_ARGS=(
  --network=host
  --progress=plain
  -f "${CONTEXT}/Dockerfile.check"
  --build-arg "BASE_IMAGE=${BASE_IMAGE}"
  --build-arg "PYTHON_IMAGE=${PYTHON_IMAGE}"
  --build-arg "COMFYUI_REPO=${COMFYUI_REPO}"
  --build-arg "COMFYUI_COMMIT=${COMFYUI_COMMIT}"
)
if [ -n "${COMFYUI_REF}" ]; then
  COMMON_ARGS+=(--build-arg "COMFYUI_REF=${COMFYUI_REF}")
fi
COMMON_ARGS+=("${EXTRA_ENV_OPTS[@]}" "${EXTRA_OPTS[@]}")

step "build api target"
logged "${LOG_DIR}/build-api.log" docker buildx build "${COMMON_ARGS[@]}" \
  --target api -t "${API_IMAGE}" "${CONTEXT}"
slow_steps "${LOG_DIR}/build-api.log"
echo "${API_IMAGE}: $(image_size "${API_IMAGE}")"
step_done

step "build worker target (self-test included)"
echo "SELFTEST_SEGMENTERS=${SELFTEST_SEGMENTERS:-<all>}: BiRefNet here is a random-weight stand-in;"
echo "  only u2netp's quality (real weights) and the deterministic cases are checked"
logged "${LOG_DIR}/build-worker.log" docker buildx build "${COMMON_ARGS[@]}" \
  --build-context "models-mirror=${MIRROR}" \
  --build-arg MODELS_MIRROR=/mirror \
  --build-arg "SELFTEST_SEGMENTERS=${SELFTEST_SEGMENTERS}" \
  --target worker -t "${WORKER_IMAGE}" "${CONTEXT}"
slow_steps "${LOG_DIR}/build-worker.log"
echo "${WORKER_IMAGE}: $(image_size "${WORKER_IMAGE}")"
step_done

step "worker self-test result"
grep -E 'selftest|self-test|SELFTEST' "${LOG_DIR}/build-worker.log" | grep -v -E '^#[0-9]+ \[' | tail -n 40 || true
SELFTEST_RESULT="$(docker run --rm --network=none --entrypoint cat "${WORKER_IMAGE}" /app/SELFTEST.txt)"
echo "/app/SELFTEST.txt: ${SELFTEST_RESULT}"
case "${SELFTEST_RESULT}" in
  "self-test passed"*) ;;
  *) die "the worker image's self-test did not pass: ${SELFTEST_RESULT}" ;;
esac
if [ -n "${SELFTEST_SEGMENTERS}" ]; then
  echo "NOTE: segmenters checked: ${SELFTEST_SEGMENTERS}; BiRefNet (random stand-in) was not."
fi
step_done

step "BiRefNet load in the worker image"
# The self-test runs with warm-up off, so it never loads a segmenter it does not check: load
# the baked BiRefNet (sha256-checked files, the snapshot's code, its weights) offline here.
# Its weights are the random stand-in's: this proves the loader and the baked layout only.
logged "${LOG_DIR}/birefnet-load.log" docker run --rm --network=none --entrypoint python \
  -w /comfyui/custom_nodes "${WORKER_IMAGE}" -c '
from pathlib import Path

import torch
from simplypng.models.segmenter import load_segmenter

segmenter = load_segmenter(Path("/comfyui/models"), Path("/app/models.lock"), True, torch.device("cpu"))
print(f"birefnet loaded from the baked files: {type(segmenter.model).__name__}")
'
tail -n 1 "${LOG_DIR}/birefnet-load.log"
step_done

step "api image on a fresh volume"
docker volume create "${API_VOLUME}" >/dev/null
STARTED_VOLUME=1
docker run -d --name "${API_CONTAINER}" --network=host \
  -e HOST=127.0.0.1 -e "PORT=${API_PORT}" -v "${API_VOLUME}:/data" "${API_IMAGE}" >/dev/null
STARTED_CONTAINER=1
healthy=0
for _ in $(seq 1 60); do
  if [ "$(docker inspect -f '{{.State.Running}}' "${API_CONTAINER}")" != "true" ]; then
    break
  fi
  if body="$(curl -fsS -m 3 "http://127.0.0.1:${API_PORT}/healthz" 2>/dev/null)"; then
    healthy=1
    break
  fi
  sleep 1
done
if [ "${healthy}" != 1 ]; then
  echo "---- api container logs" >&2
  docker logs "${API_CONTAINER}" 2>&1 | tail -n 40 >&2
  die "the api image did not answer GET /healthz on 127.0.0.1:${API_PORT}"
fi
echo "GET /healthz -> ${body}"
docker exec "${API_CONTAINER}" sh -c \
  'test -s /data/callback_master_key && stat -c "callback key: %n mode %a owner %U" /data/callback_master_key && ls /data' \
  || die "the api entry point did not create /data/callback_master_key"
docker logs "${API_CONTAINER}" 2>&1 | tail -n 8
step_done

echo
echo "== images"
echo "  ${API_IMAGE}: $(image_size "${API_IMAGE}")"
echo "  ${WORKER_IMAGE}: $(image_size "${WORKER_IMAGE}")"
RESULT="PASSED (api /healthz ok; worker ${SELFTEST_RESULT})"
