"""docker-compose.yml: valid for docker-compose, and every command, port, path, volume and variable in it exists in the code."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from compose_checks import problems

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
