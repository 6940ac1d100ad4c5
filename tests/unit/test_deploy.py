"""The Docker files agree with the code. No Docker engine runs here, so the images are not
built in tests: this checks what can be checked without one."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ls_backend.cli import build_parser
from ls_backend.config import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker" / "docker-compose.yml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_services_and_wiring(compose):
    services = compose["services"]
    assert set(services) == {"label-studio", "redis", "smartsize", "worker"}
    ls_version = re.search(r"LS_VERSION=(\S+)", (ROOT / "scripts/setup.sh").read_text())[1]
    assert services["label-studio"]["image"].endswith(f":{ls_version}")
    assert services["smartsize"]["command"][:2] == ["smartsize", "serve"]
    assert services["worker"]["command"] == ["smartsize", "worker"]
    default_port = build_parser().parse_args(["serve"]).port
    assert f"{default_port}:{default_port}" in services["smartsize"]["ports"]
    for name in ("label-studio", "redis", "smartsize", "worker"):
        assert services[name]["restart"] == "unless-stopped"
    for name in ("label-studio", "redis"):
        assert "healthcheck" in services[name]
    ls_env = services["label-studio"]["environment"]
    assert ls_env["LABEL_STUDIO_ML_BLOCK_LOCAL_IP"] == "false"
    assert ls_env["LABEL_STUDIO_SSRF_PROTECTION_ENABLED"] == "false"


def test_backend_environment_is_valid_configuration(compose):
    env = compose["services"]["smartsize"]["environment"]
    assert compose["services"]["worker"]["environment"] == env
    assert env["LABEL_STUDIO_URL"].startswith("http://label-studio:")
    assert env["REDIS_URL"].startswith("redis://redis:")
    # ${NAME:-default} -> default; ${NAME} and ${NAME:?error} -> a value the user must set
    sub = re.compile(r"\$\{\w+(?::-([^}]*)|:\?[^}]*)?\}")
    resolved = {
        k: sub.sub(lambda m: m[1] if m[1] is not None else "set", str(v)) for k, v in env.items()
    }
    settings = Settings.from_env(resolved)  # raises on any name or value the code rejects
    assert settings.redis_url and settings.auth_enabled
    known = {
        "LABEL_STUDIO_URL",
        "LABEL_STUDIO_API_KEY",
        "REDIS_URL",
        "MODEL_DIR",
        "BASIC_AUTH_USER",
        "BASIC_AUTH_PASS",
    }
    readme = (ROOT / "README.md").read_text()
    for name in env:
        assert name in known or f"`{name}`" in readme, f"{name} is not documented in README"


def test_dockerfile_matches_the_setup():
    text = DOCKERFILE.read_text()
    assert 'pip install ".[text]"' in text
    assert "USER smartsize" in text and "HEALTHCHECK" in text and "EXPOSE 9090" in text
    assert '"smartsize", "serve"' in text


@pytest.mark.skipif(
    shutil.which("docker") is None
    or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0,
    reason="the docker compose plugin is not installed here",
)
def test_docker_compose_config_parses():
    env = ROOT / "docker" / ".env.example"
    out = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "--env-file", str(env), "config", "--quiet"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
