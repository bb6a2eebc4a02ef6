"""docker-compose.yml, read statically: pinned images, GPU/CPU worker profiles, and env wiring
that the control plane's and the worker's own settings accept and that points each service at
the others."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from api_stub.settings import ApiSettings
from handler.settings import Settings as WorkerSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
METRICS_PORTS = {"dispatcher": 9101, "reconciler": 9102}
SERVICES: dict[str, dict] = COMPOSE["services"]
CONTROL_PLANE = ("migrate", "api", "dispatcher", "reconciler")
WORKERS = {"gpu": "worker", "cpu": "worker-cpu"}
_VAR = re.compile(r"\$\{([A-Z0-9_]+)(?::?-([^}]*))?\}")


def interpolate(value: object) -> str:
    """Compose's ${NAME:-default} with nothing set in the environment: the default."""
    return _VAR.sub(lambda m: m[2] or "", str(value)).replace("$$", "$")


def env(service: str) -> dict[str, str]:
    return {k: interpolate(v) for k, v in SERVICES[service].get("environment", {}).items()}


def flag(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def dotenv() -> dict[str, str]:
    """The committed .env, in the KEY=VALUE form Compose reads (comments and blanks skipped)."""
    values: dict[str, str] = {}
    for line in (ROOT / ".env").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep and re.fullmatch(r"[A-Z_][A-Z0-9_]*", key), line
            values[key] = value
    return values


def stage_names() -> set[str]:
    parser = DockerfileParser(path=str(ROOT / "Dockerfile"))
    return {i["value"].split()[-1] for i in parser.structure if i["instruction"] == "FROM"}


def test_every_pulled_image_is_pinned_and_every_build_targets_a_real_stage():
    stages = stage_names()
    for name, service in SERVICES.items():
        image = interpolate(service["image"])
        if "build" in service:
            assert service["build"]["target"] in stages, name
            assert image.endswith(":dev"), f"{name}: locally built images are tagged :dev"
            continue
        repo, _, tag = image.rpartition(":")
        assert repo and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest" and re.search(r"\d", tag), f"{name}: {image} is not pinned"


def test_gpu_worker_reserves_a_gpu_and_cpu_worker_does_not():
    gpu, cpu = SERVICES[WORKERS["gpu"]], SERVICES[WORKERS["cpu"]]
    assert gpu["profiles"] == ["gpu"] and cpu["profiles"] == ["cpu"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert "deploy" not in cpu
    assert env(WORKERS["cpu"])["COMFYUI_EXTRA_ARGS"].split(",") == ["--cpu"]
    assert WorkerSettings.from_env(env(WORKERS["cpu"])).require_gpu is False
    assert "COMFYUI_EXTRA_ARGS" not in env(WORKERS["gpu"])
    # same image and entry point either way
    assert gpu["build"] == cpu["build"] and gpu["command"] == cpu["command"]
    profiled = {n for n, s in SERVICES.items() if "profiles" in s}
    assert profiled == set(WORKERS.values()), "only the workers sit behind a profile"


def test_worker_serves_runpods_local_api_through_the_image_entry_point():
    command = SERVICES["worker"]["command"]
    assert command[0] == "/app/scripts/start.sh"
    assert "--rp_serve_api" in command and flag(command, "--rp_api_host") == "0.0.0.0"
    port = flag(command, "--rp_api_port")
    assert f"127.0.0.1:{port}:{port}" in SERVICES["worker"]["ports"]


def test_depends_on_names_existing_services_and_profiled_ones_only_optionally():
    for name, service in SERVICES.items():
        for target, spec in service.get("depends_on", {}).items():
            assert target in SERVICES, f"{name} depends on unknown {target}"
            if "profiles" in SERVICES[target]:
                # Compose >= 2.20 skips a dependency that is not required and not enabled.
                assert spec.get("required") is False, f"{name} requires profiled {target}"
    one_shots = {"migrate", "createbuckets"}
    for name in ("api", "dispatcher", "reconciler"):
        conditions = SERVICES[name]["depends_on"]
        assert {
            t for t, c in conditions.items() if c["condition"] == "service_completed_successfully"
        } == one_shots


def test_dispatcher_waits_for_whichever_worker_is_started_to_be_healthy():
    depends = SERVICES["dispatcher"]["depends_on"]
    for worker in WORKERS.values():
        assert depends[worker] == {"condition": "service_healthy", "required": False}
        assert SERVICES[worker]["healthcheck"]["test"], worker
    # Nothing else waits on a worker: the api and reconciler start without one.
    for name, service in SERVICES.items():
        if name != "dispatcher":
            assert not set(service.get("depends_on", {})) & set(WORKERS.values()), name


def test_committed_env_starts_the_cpu_worker_by_default():
    values = dotenv()
    profiles = values["COMPOSE_PROFILES"].split(",")
    assert profiles == ["cpu"]
    started = [n for n, s in SERVICES.items() if set(s.get("profiles", [])) & set(profiles)]
    assert started == [WORKERS["cpu"]]
    # Compose's own settings only: no container values hide in it.
    assert set(values) == {"COMPOSE_PROFILES"}
    # ... and it stays out of the images.
    dockerignore = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert ".env" in dockerignore


def test_dispatcher_and_reconciler_reach_the_worker_service():
    command = SERVICES["worker"]["command"]
    aliases = SERVICES[WORKERS["cpu"]]["networks"]["default"]["aliases"]
    for name in ("dispatcher", "reconciler"):
        url = urlsplit(env(name)["RUNPOD_ENDPOINT_URL"])
        assert url.hostname == WORKERS["gpu"] and url.hostname in aliases
        assert str(url.port) == flag(command, "--rp_api_port")
        settings = ApiSettings.from_env(env(name))
        assert settings.runpod_status_method == "POST"  # what the local API wants


def test_control_plane_drives_runpods_local_api_like_the_demo():
    """The local API runs a /run job only inside POST /status/{id}: the reconciler calls it at
    once, rarely repeats it, one job at a time, and the dispatcher keeps the worker fed."""
    for name in CONTROL_PLANE:
        settings = ApiSettings.from_env(env(name))
        assert settings.reconcile_after_s == 0, name
        assert settings.reconcile_every_s == 900 > settings.runpod_status_timeout_s, name
        assert settings.reconcile_concurrency == 1, name
        assert settings.max_inflight == 2, name


def test_users_get_presigned_urls_for_the_published_minio_port():
    host_port = next(
        p.split(":")[1] for p in SERVICES["minio"]["ports"] if str(p).endswith(":9000")
    )
    for name in CONTROL_PLANE:
        settings = ApiSettings.from_env(env(name))
        public = urlsplit(settings.s3_public_endpoint_url)
        assert (public.hostname, str(public.port)) == ("localhost", host_port), name
        # workers keep fetching through the compose network
        assert urlsplit(settings.s3_endpoint_url).hostname == "minio", name


def test_dispatcher_and_reconciler_serve_metrics_on_the_compose_network_only():
    for name, port in METRICS_PORTS.items():
        service = SERVICES[name]
        assert int(flag(service["command"], "--metrics-port")) == port
        assert ApiSettings.from_env(env(name)).host == "0.0.0.0", name
        assert [int(p) for p in service["expose"]] == [port]
        assert "ports" not in service, f"{name} publishes nothing to the host"
    for name in ("api", "migrate"):
        assert "HOST" not in env(name), f"{name} listens only where its command says"


def test_workers_call_back_to_the_api_service():
    command = SERVICES["api"]["command"]
    for name in CONTROL_PLANE:
        settings = ApiSettings.from_env(env(name))
        url = urlsplit(settings.callback_url)
        assert url.hostname == "api" and str(url.port) == flag(command, "--port")
        assert url.path == "/api/webhooks/runpod"
    assert f"127.0.0.1:{flag(command, '--port')}:8080" in SERVICES["api"]["ports"]


@pytest.mark.parametrize("name", CONTROL_PLANE)
def test_control_plane_env_is_exactly_what_its_settings_read(name):
    keys = set(env(name))
    known = {field.upper() for field in ApiSettings.model_fields}
    assert keys <= known, f"{name}: unknown variables {sorted(keys - known)}"
    settings = ApiSettings.from_env(env(name))
    assert settings.storage == "s3" and settings.is_postgres


@pytest.mark.parametrize("name", sorted(WORKERS.values()))
def test_worker_env_is_exactly_what_its_settings_read(name):
    keys = set(env(name))
    known = {field.upper() for field in WorkerSettings.model_fields}
    assert keys <= known, f"{name}: unknown variables {sorted(keys - known)}"
    WorkerSettings.from_env(env(name))


def test_database_url_matches_the_postgres_service():
    pg = env("postgres")
    url = urlsplit(env("api")["DATABASE_URL"])
    assert (url.hostname, url.port) == ("postgres", 5432)
    assert (url.username, url.password) == (pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"])
    assert url.path == f"/{pg['POSTGRES_DB']}"
    assert "pg_isready" in " ".join(SERVICES["postgres"]["healthcheck"]["test"])


def test_s3_wiring_points_everyone_at_minio_with_its_credentials():
    minio = env("minio")
    for name in (*CONTROL_PLANE, *WORKERS.values()):
        values = env(name)
        url = urlsplit(values["S3_ENDPOINT_URL"])
        assert (url.hostname, url.port) == ("minio", 9000), name
        assert values["S3_ACCESS_KEY_ID"] == minio["MINIO_ROOT_USER"], name
        assert values["S3_SECRET_ACCESS_KEY"] == minio["MINIO_ROOT_PASSWORD"], name
        assert values["S3_ADDRESSING_STYLE"] == "path", name
    mc_host = urlsplit(env("createbuckets")["MC_HOST_local"])
    assert (mc_host.username, mc_host.password) == (
        minio["MINIO_ROOT_USER"],
        minio["MINIO_ROOT_PASSWORD"],
    )
    assert (mc_host.hostname, mc_host.port) == ("minio", 9000)


def test_createbuckets_makes_the_control_plane_and_test_input_buckets():
    command = SERVICES["createbuckets"]["command"]
    assert command[:2] == ["mb", "--ignore-existing"]
    buckets = {path.removeprefix("local/") for path in command[2:]}
    test_input = json.loads((ROOT / "test_input.json").read_text(encoding="utf-8"))
    output_bucket = urlsplit(test_input["input"]["output_prefix"]).hostname
    assert buckets == {env("api")["S3_BUCKET"], output_bucket}


def test_published_ports_are_loopback_only():
    for name, service in SERVICES.items():
        for mapping in service.get("ports", []):
            assert str(mapping).startswith("127.0.0.1:"), f"{name}: {mapping}"


def test_control_plane_runs_through_the_api_images_entry_point():
    """The api image's entry point (docker/api-entrypoint.sh) migrates before api_stub commands
    and, with Postgres, refuses to start a process without CALLBACK_MASTER_KEY (a key of each
    container's own would split them): every control plane service must set it, keep the image's
    entry point, and name its command the way the entry point recognises."""
    for name in CONTROL_PLANE:
        service = SERVICES[name]
        assert "entrypoint" not in service, f"{name} bypasses the image's entry point"
        assert service["command"][:3] == ["python", "-m", "api_stub"], name
        key = env(name)["CALLBACK_MASTER_KEY"]
        assert len(key) >= 32, name
    keys = {env(name)["CALLBACK_MASTER_KEY"] for name in CONTROL_PLANE}
    assert len(keys) == 1, "api, dispatcher and reconciler must share one master key"
    assert SERVICES["migrate"]["command"][3] == "migrate"
