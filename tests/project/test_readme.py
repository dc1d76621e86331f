"""Every code block of README.md and docs/*.md runs as written (a tiny local model stands in for the hub one).

Pages: README.md and docs/*.md but design.md (the contract; docs/decisions/ is
not a page either). Per page, in one working folder of its own:

- its ```python blocks run, in order, in one fresh process with VECPLUG_MODEL
  pointing at a tiny model (those that call ``psycopg.connect(`` run with the
  PostgreSQL steps instead);
- every ``$ ...`` line of its ```console blocks runs in bash, with the test's
  virtual environment first on PATH, except ``vecplug serve`` (the server
  this test starts stands in for it) and ``vecplug pg ...`` (PostgreSQL steps);
- its PostgreSQL steps, the ``$ vecplug pg`` lines and the ```sql blocks (through
  psql) in the page's order, run in a database of its own, then its psycopg blocks;
- its ```toml blocks parse.

The pages' server, http://127.0.0.1:8080, is a real `vecplug serve` of the same
small model that this test starts on a free port (its URL is put in place of
the pages'), serving it under the default model's name; their DSN becomes the
test database's. A block is left out only with a marker on the line before its
fence, ``<!-- not run: the reason -->`` (or ``not run here:``); every such block
is listed as a skipped test with its reason, and a block in any other language
without a marker fails the test. Beside the blocks: the README stays a front
page, every relative link between pages finds its file and heading, and the
Configuration page lists every VECPLUG_* variable the code reads.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
README = ROOT / "README.md"
PAGES = [README, *sorted(path for path in (ROOT / "docs").glob("*.md") if path.name != "design.md")]
CONFIGURATION = ROOT / "docs" / "configuration.md"
RUNNABLE = {"python", "console", "sql", "toml"}
PAGES_SERVER = "http://127.0.0.1:8080"
PAGES_DSN = "postgresql://postgres@localhost/app"
NEEDS_POSTGRES = "psycopg.connect("
FRONT_PAGE_LINES = 260  # issue 23 set ~150; issues 24-26 added a table of nine integrations and their examples, tune and the store commands
BLOCK = re.compile(r"^(?:<!-- not run(?: here)?: (?P<reason>[^\n]*?) -->\n)?```(?P<language>[\w-]*)\n(?P<body>.*?)^```",
                   flags=re.S | re.M)
# What a page's SQL must show when it runs (a snippet of the block -> a line psql prints).
SQL_SHOWS = {"how long can a document be?": "(3 rows)",  # the top-10 query over the three rows
             "how do I read a file?": "(3 rows)",  # the nearest articles, three of them
             "how do I descale it?": "(2 rows)",  # the best passage of each of the two manuals
             "EXPLAIN": "Index Scan using docs_embedding_idx"}  # with the table scan ruled out on 3 rows


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    language: str
    body: str
    skip_reason: str | None

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    def commands(self) -> list[str]:
        """The ``$ `` lines of a console block, without the prompt."""
        return [line[2:].strip() for line in self.body.splitlines() if line.startswith("$ ")]


def page_blocks(page: Path) -> list[Block]:
    text = page.read_text()
    return [Block(page, text.count("\n", 0, match.start("language")) + 1, match["language"], match["body"],
                  match["reason"]) for match in BLOCK.finditer(text)]


def run_blocks(page: Path, language: str) -> list[Block]:
    return [block for block in page_blocks(page) if block.language == language and block.skip_reason is None]


def python_blocks(page: Path, postgres: bool) -> list[Block]:
    return [block for block in run_blocks(page, "python") if (NEEDS_POSTGRES in block.body) == postgres]


def uses_the_pages_database(command: str) -> bool:
    """`$ vecplug pg ...`, and any other command given the pages' DSN (`vecplug search --dsn ...`)."""
    return command.startswith("vecplug pg") or PAGES_DSN in command


def postgres_steps(page: Path) -> list[tuple[str, str]]:
    """The lines that use the pages' database ("command") and ```sql blocks ("sql"), in the page's order."""
    steps = []
    for block in page_blocks(page):
        if block.skip_reason is not None:
            continue
        if block.language == "sql":
            steps.append(("sql", block.body))
        elif block.language == "console":
            steps += [("command", command) for command in block.commands() if uses_the_pages_database(command)]
    return steps


def stands_in(command: str) -> bool:
    """Lines another fixture or test runs: the server this test started, the PostgreSQL steps."""
    return command.startswith("vecplug serve") or uses_the_pages_database(command)


def console_commands(page: Path) -> list[str]:
    return [command for block in run_blocks(page, "console") for command in block.commands()
            if not stands_in(command)]


def page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


def pages_with(has) -> list:
    return [pytest.param(page, id=page_id(page)) for page in PAGES if has(page)]


ALL_BLOCKS = [block for page in PAGES for block in page_blocks(page)]


def test_every_block_runs_or_says_why_not():
    assert README in PAGES and CONFIGURATION in PAGES
    unrunnable = [f"{block.where}: ```{block.language or '(no language)'}" for block in ALL_BLOCKS
                  if block.skip_reason is None and block.language not in RUNNABLE]
    assert not unrunnable, ("these blocks cannot run: make them ```python, ```console, ```sql or ```toml, or put "
                            "'<!-- not run: why -->' on the line before the fence: " + ", ".join(unrunnable))
    assert all(block.skip_reason.strip() for block in ALL_BLOCKS if block.skip_reason is not None)
    commands = [command for page in PAGES for command in console_commands(page)]
    assert any(command.startswith("vecplug embed") for command in commands)
    assert any(command.startswith("curl") for command in commands)
    assert any(kind == "command" and step.startswith("vecplug pg install") for kind, step in postgres_steps(README))
    sql = [block for block in ALL_BLOCKS if block.language == "sql"]
    hard_coded = [block.where for block in sql if re.search(r"\bvector\(\d+\)", block.body)]
    assert not hard_coded, f"SQL that hard-codes a vector size instead of following the model: {hard_coded}"


def test_readme_is_a_front_page():
    lines = len(README.read_text().splitlines())
    assert lines <= FRONT_PAGE_LINES, f"README.md has {lines} lines: move detail into docs/<subject>.md"


def anchors(page: Path) -> set[str]:
    """GitHub's anchors for a page's headings: lower case, punctuation dropped, spaces as hyphens."""
    text = BLOCK.sub("", page.read_text())
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
            for heading in re.findall(r"^#+ (.*)$", text, flags=re.M)}


@pytest.mark.parametrize("page", [pytest.param(page, id=page_id(page)) for page in PAGES])
def test_links_between_pages_resolve(page):
    """A page moved out of the README leaves no link to a file or heading that is not there."""
    broken = []
    for target, anchor in re.findall(r"\]\((?!https?:|mailto:)([^)#\s]*)(?:#([^)\s]+))?\)", BLOCK.sub("", page.read_text())):
        path = (page.parent / target).resolve() if target else page
        if not path.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{target}#{anchor} (no such heading)")
    assert not broken, f"{page_id(page)} links to {broken}"


def test_ci_runs_the_readmes_test_command():
    """.ci/run runs exactly the command the README's Test section gives."""
    ci_command = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
                  if line.strip() and not line.startswith(("#", "set ", "cd "))][-1].strip()
    section = README.read_text().split("## Test", 1)[1].split("\n## ", 1)[0]
    assert f"$ {ci_command}\n" in section, (ci_command, section)


@pytest.mark.parametrize("block", [pytest.param(block, id=block.where) for block in ALL_BLOCKS
                                   if block.skip_reason is not None])
def test_blocks_left_out(block):
    """One skipped test per block a page marks as not run, so the test summary lists them with their reasons."""
    pytest.skip(f"{block.where} (```{block.language}) not run: {block.skip_reason}")


@pytest.fixture(scope="module")
def small_model_dir(tmp_path_factory):
    """384 dimensions, so the pages' dimensions=256 examples run as written."""
    from vecplug.testing import write_model

    return write_model(tmp_path_factory.mktemp("pages") / "small-modernbert", shape="small")


@pytest.fixture(scope="module")
def pages_env(small_model_dir):
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "VECPLUG_MODEL": str(small_model_dir), "HF_HUB_OFFLINE": "1",
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}


@pytest.fixture(scope="module")
def pages_server(small_model_dir):
    """`vecplug serve` as the pages start it, on a free port, shared by every page: its URL."""
    import vecplug
    from vecplug.testing import running_server

    with running_server(small_model_dir, "--served-name", vecplug.DEFAULT_MODEL) as server:
        yield server.url


def workdir(tmp_path_factory, page: Path) -> Path:
    return tmp_path_factory.mktemp(page.stem.lower())


@pytest.mark.slow  # a fresh process or a real wait: seconds of the fast loop
@pytest.mark.parametrize("page", pages_with(lambda page: python_blocks(page, postgres=False)))
def test_python_examples_run(page, pages_env, pages_server, tmp_path_factory):
    blocks = python_blocks(page, postgres=False)
    script = "\n\n".join(f"print('--- {block.where}')\n{block.body.replace(PAGES_SERVER, pages_server)}"
                         for block in blocks)
    folder = workdir(tmp_path_factory, page)
    (folder / "page_examples.py").write_text(script)
    process = subprocess.run([sys.executable, "page_examples.py"], cwd=folder, env=pages_env,
                             capture_output=True, text=True, timeout=600)
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-5000:]


@pytest.mark.slow  # a fresh process or a real wait: seconds of the fast loop
@pytest.mark.parametrize("page", pages_with(console_commands))
def test_console_examples_run(page, pages_env, pages_server, tmp_path_factory):
    folder = workdir(tmp_path_factory, page)
    have_curl = shutil.which("curl") is not None
    for command in console_commands(page):
        if command.startswith("curl") and not have_curl:
            continue
        process = subprocess.run(["bash", "-c", command.replace(PAGES_SERVER, pages_server)], cwd=folder,
                                 env=pages_env, capture_output=True, text=True, timeout=300)
        assert process.returncode == 0, f"{command}: {process.stderr[-3000:]}"
        written = re.search(r" (?:>|-o) (\S+)", command)  # a command that writes a file prints nothing
        if written:
            assert (folder / written[1]).stat().st_size, f"{command} wrote nothing"
        else:
            assert process.stdout.strip(), f"{command} printed nothing"
        if command.startswith("curl"):
            assert '"error"' not in process.stdout, f"{command}: {process.stdout[-2000:]}"
    if not have_curl:
        pytest.skip("curl is not installed: the pages' curl lines were not run (apt-get install curl)")


@pytest.mark.parametrize("page", pages_with(postgres_steps))
def test_postgres_examples_run(page, pages_env, pages_server, pg_cluster, tmp_path_factory):
    pytest.importorskip("psycopg")
    database = pg_cluster.create_database(f"page_{page.stem.lower()}")
    dsn = f"postgresql://postgres@127.0.0.1:{pg_cluster.port}/{database}"
    folder = workdir(tmp_path_factory, page)

    def adapt(text: str) -> str:
        return text.replace(PAGES_DSN, dsn).replace(PAGES_SERVER, pages_server)

    steps = postgres_steps(page)
    outputs = []
    for index, (kind, step) in enumerate(steps):  # in the order a reader meets them
        if kind == "command":
            process = subprocess.run(["bash", "-c", adapt(step)], cwd=folder, env=pages_env,
                                     capture_output=True, text=True, timeout=300)
            assert process.returncode == 0, f"{step}: {process.stderr[-3000:]}"
            if step.startswith("vecplug pg install"):
                assert "query functions (vecplug.embed_query, embed_document, embed_documents): installed" \
                    in process.stdout, process.stdout
            outputs.append(process.stdout + process.stderr)
            continue
        script = folder / f"step_{index}.sql"
        script.write_text(adapt(step))
        psql = subprocess.run([str(pg_cluster.bin_dir / "psql"), "-X", "-v", "ON_ERROR_STOP=1", dsn, "-f",
                               str(script)], capture_output=True, text=True, timeout=300)
        assert psql.returncode == 0, f"SQL block {index}: {psql.stderr[-3000:]}"
        for snippet, shown in SQL_SHOWS.items():
            if snippet in step:
                assert shown in psql.stdout, (snippet, psql.stdout)
        outputs.append(psql.stdout)
    everything = "\n".join(outputs)
    if any("create_vectorizer('articles'" in step for kind, step in steps):
        assert "embedded 3 rows" in everything  # the worker embedded the articles the SQL inserted
    if any("vecplug pg status" in step or "vecplug.status" in step for kind, step in steps):
        assert "public.articles.embedding" in everything  # and vecplug.status / vecplug pg status show them
    python = python_blocks(page, postgres=True)
    if not python:
        return
    (folder / "page_postgres.py").write_text("\n\n".join(f"print('--- {block.where}')\n{adapt(block.body)}"
                                                          for block in python))
    process = subprocess.run([sys.executable, "page_postgres.py"], cwd=folder, env=pages_env,
                             capture_output=True, text=True, timeout=600)
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-5000:]
    printed = dict(zip([block.where for block in python], process.stdout.split("--- ")[1:]))
    for block in python:
        if "vecplug_pgvector.search(" in block.body and "k=3" in block.body:  # three rows, one line each
            assert len(printed[block.where].strip().splitlines()) == 1 + 3, printed[block.where]


@pytest.mark.parametrize("block", [pytest.param(block, id=block.where) for block in ALL_BLOCKS
                                   if block.language == "toml" and block.skip_reason is None])
def test_toml_examples_parse(block):
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    assert tomllib.loads(block.body), block.where


def test_configuration_table_names_every_variable_the_code_reads():
    """A VECPLUG_* variable read by shipped code (core, adapters, plugins, compose) is in docs/configuration.md."""
    shipped = [*ROOT.glob("vecplug/**/*.py"), *ROOT.glob("adapters/**/*.py"), *ROOT.glob("plugins/**/*.py"),
               *ROOT.glob("sql/**/*.sql"), ROOT / "docker-compose.yml", ROOT / "scripts" / "test.sh",
               ROOT / "scripts" / "demo.sh", ROOT / "scripts" / "venv.sh"]
    read = set()
    for path in shipped:
        read |= set(re.findall(r"\bVECPLUG_[A-Z_]*[A-Z]\b", path.read_text()))
    documented = set(re.findall(r"`(VECPLUG_[A-Z_]+)`", CONFIGURATION.read_text()))
    assert read, "found no VECPLUG_ variable in the code: the scan itself is broken"
    assert read - documented == set(), f"read by the code, missing from docs/configuration.md: {read - documented}"
