"""docker-compose.yml: valid for docker-compose, and every command, port, path, volume and variable in it exists in the code."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from compose_checks import dockerfile_base_images, host_override_problems, problems

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = (ROOT / "docker-compose.yml").read_text()


def test_docker_compose_config_accepts_it():
    """Debian's docker-compose (installed by scripts/test.sh) parses and resolves the file with the example env."""
    assert shutil.which("docker-compose"), "docker-compose is missing: scripts/test.sh installs it (apt)"
    process = subprocess.run(["docker-compose", "--env-file", ".env.example", "config"], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
    assert process.returncode == 0, process.stderr
    assert "127.0.0.1:8080:8080" in process.stdout and "service_completed_successfully" in process.stdout


def test_without_an_env_file_it_refuses_to_start_with_no_api_key(tmp_path):
    shutil.copy(ROOT / "docker-compose.yml", tmp_path)
    process = subprocess.run(["docker-compose", "config"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert process.returncode != 0 and "in .env" in process.stderr


def test_the_env_file_is_not_committed_and_its_example_is():
    tracked = subprocess.run(["git", "ls-files", ".env", ".env.example"], cwd=ROOT, capture_output=True, text=True)
    if tracked.returncode != 0:
        pytest.skip("not a git checkout")
    assert tracked.stdout.split() == [".env.example"]
    assert ".env" in (ROOT / ".gitignore").read_text().split() and ".env" in (ROOT / ".dockerignore").read_text()


def test_everything_in_it_matches_the_code():
    findings = problems(ROOT)
    assert findings.problems == []


def test_what_is_not_built_yet_is_reported_not_hidden():
    """Commands another branch builds are listed as unchecked until they exist, then checked like the rest."""
    from vecplug.cli import cli

    findings = problems(ROOT)
    worker_exists = "pg" in cli.commands and "worker" in getattr(cli.commands["pg"], "commands", {})
    assert any("pg worker" in line for line in findings.unchecked) == (not worker_exists), findings.unchecked


@pytest.mark.parametrize("original, changed, complaint", [
    ('"--port", "8080"]\n', '"--port", "8081"]\n', "but --port is 8081"),
    ('"--port", "8080"]\n', '"--port", "8080", "--max-batch-token", "4096"]\n', "'--max-batch-token' is not an option"),
    ('"--port", "8080"]\n', '"--port", "8080", "--dtype", "float8"]\n', "--dtype 'float8'"),
    ("dockerfile: docker/vecplug/Dockerfile", "dockerfile: docker/vecplug/Dockerfile.cpu", "does not exist"),
    ("context: docker/postgres", "context: docker/postgresql", "build context docker/postgresql does not exist"),
    ('"127.0.0.1:6333:6333"', '"6333:6333"', "not bound to 127.0.0.1"),
    ('"127.0.0.1:8000:8000"', '"127.0.0.1:8000:8001"', "the port HttpClient connects to"),
    ("qdrant/qdrant:v1.16.0", "qdrant/qdrant:v1.15.3", "older than the qdrant-client"),
    ("chromadb/chroma:1.5.9", "chromadb/chroma:0.6.3", "major version"),
    ("      - qdrant-data:/qdrant/storage", "      - qdrant_data:/qdrant/storage", "'qdrant_data' is not declared"),
    ("      - models:/models\n    healthcheck", "      - models:/root/.cache\n    healthcheck", "HF_HOME is /models"),
    ("      VECPLUG_MODEL: ${VECPLUG_MODEL", "      VECPLUG_MODELS: ${VECPLUG_MODEL", "VECPLUG_MODELS, which vecplug never reads"),
    ("${VECPLUG_SERVER_URL:-", "${VECPLUG_SERVERS:-", "${VECPLUG_SERVERS} is used but not in .env.example"),
    ("@postgres:5432/postgres", "@postgres:5433/postgres", "is not PostgreSQL's 5432"),
    ("@postgres:5432/postgres", "@db:5432/postgres", "names host db, which is no service"),
    ("'http://127.0.0.1:8080/health'", "'http://127.0.0.1:8088/health'", "the health check asks port 8088"),
])
def test_a_change_the_code_does_not_have_is_caught(original, changed, complaint):
    assert original in COMPOSE, f"the mutation no longer applies: {original!r}"
    findings = problems(ROOT, COMPOSE.replace(original, changed, 1))
    assert any(complaint in line for line in findings.problems), findings.problems


HOST_OVERRIDE = (ROOT / "docker/compose.host.yml").read_text()


def test_the_smoke_override_resolves_with_the_compose_file():
    """scripts/compose_smoke.sh's two files together, as docker-compose resolves them."""
    process = subprocess.run(["docker-compose", "--env-file", ".env.example", "-f", "docker-compose.yml",
                              "-f", "docker/compose.host.yml", "config"], cwd=ROOT, capture_output=True, text=True,
                             timeout=120, env={**os.environ, "SMOKE_MODEL_DIR": "/tmp"})
    assert process.returncode == 0, process.stderr
    assert "network_mode: host" in process.stdout and "127.0.0.1:18080" in process.stdout


def test_the_smoke_stack_stays_on_the_loopback_and_its_ports_agree():
    findings = host_override_problems(ROOT)
    assert findings.problems == [] and findings.unchecked == []


@pytest.mark.parametrize("original, changed, complaint", [
    ('"--host", "127.0.0.1", "--port"', '"--host", "0.0.0.0", "--port"', "binds every address"),
    ("urlopen('http://127.0.0.1:${SMOKE_SERVER_PORT:-18080}/health'", "urlopen('http://127.0.0.1:8080/health'",
     "the server port differs"),
    ('"-p", "${SMOKE_PG_PORT:-55432}"', '"-p", "5432"', "the postgres port differs"),
    ('"http://127.0.0.1:${SMOKE_SERVER_PORT:-18080}"', '"http://vecplug:${SMOKE_SERVER_PORT:-18080}"',
     "names host vecplug"),
    ("  pg-worker:\n    network_mode: host\n", "  pg-worker:\n", "pg-worker: not on the host network"),
    ('"--metrics-host", "127.0.0.1"', '"--metrics-hosts", "127.0.0.1"', "'--metrics-hosts' is not an option"),
    ("${SMOKE_PG_PORT:-55432}", "${SMOKE_PG_PORT:-5432}", "PostgreSQL is on 5432"),
])
def test_a_smoke_override_that_leaves_the_loopback_or_disagrees_is_caught(original, changed, complaint):
    assert original in HOST_OVERRIDE, f"the mutation no longer applies: {original!r}"
    findings = host_override_problems(ROOT, HOST_OVERRIDE.replace(original, changed))
    assert any(complaint in line for line in findings.problems), findings.problems


def test_the_dockerfiles_build_on_official_images_unless_told_otherwise():
    """compose_smoke.sh passes BASE_IMAGE (local Debian bases); everywhere else the official images are used."""
    assert dockerfile_base_images(ROOT) == {"docker/vecplug/Dockerfile": "python:3.11-slim",
                                            "docker/postgres/Dockerfile": "pgvector/pgvector:pg${PG_MAJOR}"}
