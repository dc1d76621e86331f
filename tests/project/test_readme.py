"""The README's examples run as written (with a tiny local model standing in for the hub one).

Every ```python block runs, in order, in one fresh process with
VECPLUG_MODEL pointing at a tiny model; every `$ vecplug ...` and `$ curl ...`
line in a ```console block runs as a command. Blocks that need a GPU are
skipped. The README's server, http://127.0.0.1:8080, is a real `vecplug serve`
of the same small model that this test starts on a free port (its URL is put
in place of the README's), serving it under the default model's name.

The PostgreSQL section runs against the test cluster and that server: its
`$ vecplug pg ...` lines, then its ```sql blocks through psql, then the
```python blocks that connect with psycopg, with the README's DSN replaced
by the test database's and `vector(768)` by the small model's size.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).parents[2] / "README.md"
NEEDS_GPU = re.compile(r"""device=["']cuda""")
README_SERVER = "http://127.0.0.1:8080"
NEEDS_POSTGRES = "psycopg.connect("
README_DSN = "postgresql://postgres@localhost/app"


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


@pytest.fixture(scope="module")
def readme_server(small_model_dir):
    """`vecplug serve` as the README starts it, on a free port: its URL."""
    import vecplug
    from vecplug.testing import running_server

    with running_server(small_model_dir, "--served-name", vecplug.DEFAULT_MODEL) as server:
        yield server.url


@pytest.mark.slow  # a fresh process or a real wait: seconds of the fast loop
def test_readme_python_examples_run(readme_env, readme_server, tmp_path):
    runnable = [block.replace(README_SERVER, readme_server) for block in blocks("python")
                if not NEEDS_GPU.search(block) and NEEDS_POSTGRES not in block]
    assert len(runnable) >= 3
    script = "\n\n".join(f"print('--- block {index}')\n{block}" for index, block in enumerate(runnable))
    (tmp_path / "readme_examples.py").write_text(script)
    process = subprocess.run([sys.executable, "readme_examples.py"], cwd=tmp_path, env=readme_env,
                             capture_output=True, text=True, timeout=600)
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-5000:]


def console_commands() -> list[str]:
    return [line[2:].split("  #")[0].strip() for block in blocks("console") for line in block.splitlines()
            if line.startswith(("$ vecplug ", "$ curl "))]


@pytest.mark.slow  # a fresh process or a real wait: seconds of the fast loop
def test_readme_cli_examples_run(readme_env, readme_server, tmp_path):
    commands = console_commands()
    assert any(command.startswith("vecplug embed") for command in commands)
    assert any(command.startswith("curl") for command in commands)
    bin_dir = Path(sys.executable).parent
    have_curl = shutil.which("curl") is not None
    for command in commands:
        if command.startswith(("vecplug bench", "vecplug serve", "vecplug pg")):
            continue  # test.sh runs `vecplug bench --quick`; readme_server is the README's server; pg: below
        if command.startswith("curl") and not have_curl:
            continue
        argv = shlex.split(command.replace(README_SERVER, readme_server))
        executable = str(bin_dir / argv[0]) if argv[0] == "vecplug" else argv[0]
        process = subprocess.run([executable, *argv[1:]], cwd=tmp_path, env=readme_env,
                                 capture_output=True, text=True, timeout=300)
        assert process.returncode == 0, f"{command}: {process.stderr[-3000:]}"
        assert process.stdout.strip(), f"{command} printed nothing"
        if argv[0] == "curl":
            assert '"error"' not in process.stdout, f"{command}: {process.stdout[-2000:]}"
    if not have_curl:
        pytest.skip("curl is not installed: the README's curl lines were not run (apt-get install curl)")


def postgres_steps() -> list[tuple[str, str]]:
    """The `$ vecplug pg` lines ("command") and ```sql blocks ("sql"), in the README's order."""
    steps = []
    for language, body in re.findall(r"```(console|sql)\n(.*?)```", README.read_text(), flags=re.S):
        if language == "sql":
            steps.append(("sql", body))
        else:
            steps += [("command", line[2:].split("  #")[0].strip()) for line in body.splitlines()
                      if line.startswith("$ vecplug pg")]
    return steps


def test_readme_postgres_examples_run(readme_env, readme_server, small_model_dir, pg_cluster, tmp_path):
    pytest.importorskip("psycopg")
    import vecplug

    dimensions = vecplug.load_model(str(small_model_dir)).dimensions
    database = pg_cluster.create_database("readme")
    dsn = f"postgresql://postgres@127.0.0.1:{pg_cluster.port}/{database}"

    def adapt(text: str) -> str:
        return text.replace(README_DSN, dsn).replace(README_SERVER, readme_server)

    steps = postgres_steps()
    assert any(kind == "command" and step.startswith("vecplug pg install") for kind, step in steps)
    assert any(kind == "sql" for kind, step in steps), "the README has no SQL"
    bin_dir = Path(sys.executable).parent
    outputs = []
    for index, (kind, step) in enumerate(steps):  # in the order a reader meets them
        if kind == "command":
            argv = shlex.split(adapt(step))
            process = subprocess.run([str(bin_dir / argv[0]), *argv[1:]], cwd=tmp_path, env=readme_env,
                                     capture_output=True, text=True, timeout=300)
            assert process.returncode == 0, f"{step}: {process.stderr[-3000:]}"
            if step.startswith("vecplug pg install"):
                assert "query functions (vecplug.embed_query, embed_document, embed_documents): installed" \
                    in process.stdout, process.stdout
            outputs.append(process.stdout + process.stderr)
            continue
        script = tmp_path / f"readme_{index}.sql"
        script.write_text(adapt(step).replace("vector(768)", f"vector({dimensions})"))
        psql = subprocess.run([str(pg_cluster.bin_dir / "psql"), "-X", "-v", "ON_ERROR_STOP=1", dsn, "-f",
                               str(script)], capture_output=True, text=True, timeout=300)
        assert psql.returncode == 0, f"SQL block {index}: {psql.stderr[-3000:]}"
        if "how long can a document be?" in step:
            assert "(3 rows)" in psql.stdout, psql.stdout  # the top-10 query over the three rows
        if "how do I descale it?" in step:
            assert "(2 rows)" in psql.stdout, psql.stdout  # the best passage of each of the two manuals
        if "EXPLAIN" in step:  # what the README says EXPLAIN shows (with the table scan ruled out on 3 rows)
            assert "Index Scan using docs_embedding_idx" in psql.stdout, psql.stdout
        outputs.append(psql.stdout)
    everything = "\n".join(outputs)
    assert "embedded 3 rows" in everything  # the worker embedded the articles the SQL inserted
    assert "public.articles.embedding" in everything  # and vecplug.status / vecplug pg status show them
    python = [adapt(block) for block in blocks("python") if NEEDS_POSTGRES in block]
    assert python
    (tmp_path / "readme_postgres.py").write_text("\n\n".join(python))
    process = subprocess.run([sys.executable, "readme_postgres.py"], cwd=tmp_path, env=readme_env,
                             capture_output=True, text=True, timeout=600)
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-5000:]
    assert len(process.stdout.strip().splitlines()) == 3, process.stdout


def test_configuration_table_names_every_variable_the_code_reads():
    """A VECPLUG_* variable read by shipped code (core, adapters, plugins, compose) is in the README's table."""
    root = README.parent
    shipped = [*root.glob("vecplug/**/*.py"), *root.glob("adapters/**/*.py"), *root.glob("plugins/**/*.py"),
               *root.glob("sql/**/*.sql"), root / "docker-compose.yml", root / "scripts" / "test.sh",
               root / "scripts" / "demo.sh", root / "scripts" / "venv.sh"]
    read = set()
    for path in shipped:
        read |= set(re.findall(r"\bVECPLUG_[A-Z_]*[A-Z]\b", path.read_text()))
    section = README.read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`(VECPLUG_[A-Z_]+)`", section))
    assert read, "found no VECPLUG_ variable in the code: the scan itself is broken"
    assert read - documented == set(), f"read by the code, missing from README's Configuration: {read - documented}"
