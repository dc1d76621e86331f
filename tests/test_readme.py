"""The README's examples run as written (with a tiny local model standing in for the hub one).

Every ```python block runs, in order, in one fresh process with
VECPLUG_MODEL pointing at a tiny model; every `$ vecplug ...` line in a
```console block runs as a command. Blocks that need a GPU are skipped.

The PostgreSQL section runs against the test cluster and a `vecplug serve`
of the same small model that the test starts: its `$ vecplug pg ...` lines,
then its ```sql blocks through psql, then the ```python blocks that connect
with psycopg, with the README's DSN and server URL replaced by the test's
and `vector(768)` by the small model's size.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).parent.parent / "README.md"
NEEDS_GPU = re.compile(r"""device=["']cuda""")
NEEDS_POSTGRES = "psycopg.connect("
README_DSN = "postgresql://postgres@localhost/app"
README_SERVER_URL = "http://127.0.0.1:8080"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


@pytest.fixture(scope="module")
def small_model_dir(tmp_path_factory):
    """384 dimensions, so the README's dimensions=256 examples run as written."""
    from vecplug.testing import write_model

    return write_model(tmp_path_factory.mktemp("readme") / "small-modernbert", shape="small")


@pytest.fixture
def readme_env(small_model_dir):
    return {**os.environ, "VECPLUG_MODEL": str(small_model_dir), "HF_HUB_OFFLINE": "1"}


def test_readme_python_examples_run(readme_env, tmp_path):
    runnable = [block for block in blocks("python") if not NEEDS_GPU.search(block) and NEEDS_POSTGRES not in block]
    assert len(runnable) >= 3
    script = "\n\n".join(f"print('--- block {index}')\n{block}" for index, block in enumerate(runnable))
    (tmp_path / "readme_examples.py").write_text(script)
    process = subprocess.run([sys.executable, "readme_examples.py"], cwd=tmp_path, env=readme_env,
                             capture_output=True, text=True, timeout=600)
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-5000:]


def console_commands() -> list[str]:
    return [line[2:].split("  #")[0].strip() for block in blocks("console") for line in block.splitlines()
            if line.startswith("$ vecplug ")]


def test_readme_cli_examples_run(readme_env, tmp_path):
    # `vecplug serve` runs until stopped and `vecplug pg` needs a database: test_readme_postgres_examples_run
    commands = [command for command in console_commands() if not command.startswith(("vecplug serve", "vecplug pg"))]
    assert any(command.startswith("vecplug embed") for command in commands)
    bin_dir = Path(sys.executable).parent
    for command in commands:
        if command.startswith("vecplug bench"):
            continue  # ./scripts/test.sh runs `vecplug bench --quick` itself
        argv = shlex.split(command)
        process = subprocess.run([str(bin_dir / argv[0]), *argv[1:]], cwd=tmp_path, env=readme_env,
                                 capture_output=True, text=True, timeout=300)
        assert process.returncode == 0, f"{command}: {process.stderr[-3000:]}"
        assert process.stdout.strip(), f"{command} printed nothing"


def test_readme_postgres_examples_run(readme_env, small_model_dir, pg_cluster, tmp_path):
    pytest.importorskip("psycopg")
    pytest.importorskip("fastapi")
    from vecplug.testing import running_server

    import vecplug

    dimensions = vecplug.load_model(str(small_model_dir)).dimensions
    database = pg_cluster.create_database("readme")
    dsn = f"postgresql://postgres@127.0.0.1:{pg_cluster.port}/{database}"
    with running_server(small_model_dir, env=readme_env) as server:

        def adapt(text: str) -> str:
            return text.replace(README_DSN, dsn).replace(README_SERVER_URL, server.url)

        pg_commands = [adapt(c) for c in console_commands() if c.startswith("vecplug pg")]
        assert any(command.startswith("vecplug pg install") for command in pg_commands)
        bin_dir = Path(sys.executable).parent
        for command in pg_commands:
            argv = shlex.split(command)
            process = subprocess.run([str(bin_dir / argv[0]), *argv[1:]], cwd=tmp_path, env=readme_env,
                                     capture_output=True, text=True, timeout=300)
            assert process.returncode == 0, f"{command}: {process.stderr[-3000:]}"
            assert "query functions (vecplug.embed_query, embed_document, embed_documents): installed" \
                in process.stdout, process.stdout
        sql_blocks = blocks("sql")
        assert sql_blocks, "the README has no SQL"
        for index, block in enumerate(sql_blocks):
            script = tmp_path / f"readme_{index}.sql"
            script.write_text(adapt(block).replace("vector(768)", f"vector({dimensions})"))
            psql = subprocess.run([str(pg_cluster.bin_dir / "psql"), "-X", "-v", "ON_ERROR_STOP=1", dsn, "-f",
                                   str(script)], capture_output=True, text=True, timeout=300)
            assert psql.returncode == 0, f"SQL block {index}: {psql.stderr[-3000:]}"
        assert "(3 rows)" in psql.stdout, psql.stdout  # the last block's top-10 query over the three rows
        python = [adapt(block) for block in blocks("python") if NEEDS_POSTGRES in block]
        assert python
        (tmp_path / "readme_postgres.py").write_text("\n\n".join(python))
        process = subprocess.run([sys.executable, "readme_postgres.py"], cwd=tmp_path, env=readme_env,
                                 capture_output=True, text=True, timeout=600)
        assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-5000:]
        assert len(process.stdout.strip().splitlines()) == 3, process.stdout
