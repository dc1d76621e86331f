"""Check docker-compose.yml against the code: commands and flags, ports, Dockerfiles, volumes, variables, images.

``problems(compose, root)`` returns what disagrees (empty when all is well)
and ``unchecked`` what could not be checked because the code does not have
it yet (a command another branch is still building).
"""
from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from pathlib import Path

import click
import yaml

VARIABLE = re.compile(r"\$\{(\w+)(?::?[-?]([^}]*))?\}")


@dataclass
class Findings:
    problems: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)


def env_example(root: Path) -> dict[str, str]:
    values = {}
    for line in (root / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def load(root: Path, text: str | None = None) -> dict:
    """The compose file as docker-compose reads it: anchors merged, ${VARS} from .env.example."""
    values = env_example(root)

    def interpolate(node):
        if isinstance(node, str):
            return VARIABLE.sub(lambda match: values.get(match.group(1), match.group(2) or ""), node)
        if isinstance(node, list):
            return [interpolate(item) for item in node]
        if isinstance(node, dict):
            return {key: interpolate(value) for key, value in node.items()}
        return node

    return interpolate(yaml.safe_load(text if text is not None else (root / "docker-compose.yml").read_text()))


def find_command(argv: list[str]):
    """The click command ``vecplug a b ...`` names, and the rest of argv; None if the code has no such command."""
    from vecplug.cli import cli

    command, rest = cli, list(argv[1:])
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        sub = command.commands.get(rest[0])
        if sub is None:
            return None, rest
        command, rest = sub, rest[1:]
    return command, rest


def parse_options(command: click.Command, args: list[str], where: str, findings: Findings) -> dict[str, str]:
    """``{"--flag": value}``; unknown flags and missing values are problems."""
    options = {opt: param for param in command.params if isinstance(param, click.Option) for opt in param.opts}
    values: dict[str, str] = {}
    index = 0
    while index < len(args):
        flag = args[index]
        param = options.get(flag)
        if param is None:
            findings.problems.append(f"{where}: {flag!r} is not an option of `vecplug {command.name}`")
            index += 1
            continue
        if param.is_flag:
            values[flag] = "true"
            index += 1
            continue
        if index + 1 >= len(args):
            findings.problems.append(f"{where}: {flag} needs a value")
            break
        value = args[index + 1]
        try:
            param.type.convert(value, param, None)
        except click.BadParameter as error:
            findings.problems.append(f"{where}: {flag} {value!r}: {error.message}")
        values[flag] = value
        index += 2
    return values


def ports_of(service: dict, where: str, findings: Findings) -> dict[int, int]:
    """container port -> host port; every one must be bound to 127.0.0.1."""
    found = {}
    for entry in service.get("ports", []):
        parts = str(entry).split(":")
        if len(parts) != 3 or parts[0] != "127.0.0.1":
            findings.problems.append(f"{where}: port {entry!r} is not bound to 127.0.0.1")
            continue
        found[int(parts[2].split("/")[0])] = int(parts[1])
    return found


def option_default(command: click.Command, flag: str):
    return next(param.default for param in command.params if flag in getattr(param, "opts", ()))


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def minimum_from_pyproject(root: Path, package: str) -> tuple[int, ...]:
    match = re.search(rf'"{re.escape(package)}(?:\[[^\]]*\])?>=([\d.]+)', (root / "pyproject.toml").read_text())
    assert match, f"pyproject.toml has no {package}>= requirement"
    return version_tuple(match.group(1))


def check_build(name: str, service: dict, root: Path, findings: Findings) -> str | None:
    """The Dockerfile's text, when the service is built from this repository and its paths exist."""
    build = service.get("build")
    if build is None:
        return None
    context = root / build.get("context", ".")
    dockerfile = context / build.get("dockerfile", "Dockerfile")
    if not context.is_dir():
        findings.problems.append(f"{name}: build context {build.get('context')} does not exist")
        return None
    if not dockerfile.is_file():
        findings.problems.append(f"{name}: Dockerfile {build.get('dockerfile')} does not exist in {context}")
        return None
    text = dockerfile.read_text()
    for copied in re.findall(r"^COPY\s+(\S+)\s", text, flags=re.M):
        if not (context / copied).exists():
            findings.problems.append(f"{name}: {dockerfile.name} copies {copied}, which is not in {context}")
    return text


def check_vecplug_command(name: str, service: dict, dockerfile: str | None, service_names, findings: Findings) -> None:
    command = service.get("command")
    if not command or command[0] != "vecplug":
        return
    where = f"{name}: `{' '.join(command[:3])}`"
    click_command, rest = find_command(command)
    if click_command is None:
        findings.unchecked.append(f"{where}: the code has no such command yet, so its flags are unchecked")
        return
    options = parse_options(click_command, rest, where, findings)
    ports = ports_of(service, name, Findings())  # bindings are checked once, for every service
    port_flag = {"serve": "--port", "worker": "--metrics-port"}.get(click_command.name)
    if port_flag:
        port = int(options.get(port_flag) or option_default(click_command, port_flag) or 0)
        if ports and port not in ports:
            findings.problems.append(f"{name}: publishes container port(s) {sorted(ports)}, but {port_flag} is {port}")
        test = " ".join(map(str, service.get("healthcheck", {}).get("test", [])))
        for url_port in re.findall(r"127\.0\.0\.1:(\d+)", test):
            if int(url_port) != port:
                findings.problems.append(f"{name}: the health check asks port {url_port}, the server is on {port}")
        if dockerfile and click_command.name == "serve":
            exposed = re.findall(r"^EXPOSE\s+(\d+)", dockerfile, flags=re.M)
            if exposed and int(exposed[0]) != port:
                findings.problems.append(f"{name}: the Dockerfile exposes {exposed[0]}, the server is on {port}")
    if "--dsn" in options:
        dsn_port = re.search(r"@[\w.-]+:(\d+)/", options["--dsn"])
        host = re.search(r"@([\w.-]+)[:/]", options["--dsn"])
        if host and host.group(1) not in service_names:
            findings.problems.append(f"{where}: --dsn names host {host.group(1)}, which is no service")
        if dsn_port and int(dsn_port.group(1)) != 5432:
            findings.problems.append(f"{where}: --dsn port {dsn_port.group(1)} is not PostgreSQL's 5432")


def check_environment(name: str, service: dict, package_text: str, findings: Findings) -> None:
    """Every VECPLUG_* variable a service sets is one the code reads."""
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    for variable in environment:
        if variable.startswith("VECPLUG_") and variable not in package_text:
            findings.problems.append(f"{name}: sets {variable}, which vecplug never reads")


def check_images(compose: dict, root: Path, findings: Findings) -> None:
    services = compose["services"]
    qdrant = services["qdrant"]["image"]
    if not qdrant.startswith("qdrant/qdrant:") or version_tuple(qdrant) < minimum_from_pyproject(root, "qdrant-client"):
        findings.problems.append(f"qdrant: {qdrant} is older than the qdrant-client the adapter needs (collection metadata)")
    chroma = services["chroma"]["image"]
    import chromadb

    if not chroma.startswith("chromadb/chroma:") or version_tuple(chroma)[0] != version_tuple(chromadb.__version__)[0]:
        findings.problems.append(f"chroma: {chroma} is not chromadb {chromadb.__version__}'s major version")
    from chromadb import HttpClient
    from qdrant_client import QdrantClient

    for name, client, parameter in (("qdrant", QdrantClient, "port"), ("chroma", HttpClient, "port")):
        default = inspect.signature(client).parameters[parameter].default
        if default not in ports_of(services[name], name, Findings()):
            findings.problems.append(f"{name}: does not publish {default}, the port {client.__name__} connects to")
    postgres = services["postgres"]
    if 5432 not in ports_of(postgres, "postgres", Findings()):
        findings.problems.append("postgres: does not publish 5432")


def check_volumes(compose: dict, dockerfiles: dict[str, str], findings: Findings) -> None:
    declared = set(compose.get("volumes") or {})
    used = set()
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source, _, target = str(volume).partition(":")
            target = target.split(":")[0]
            used.add(source)
            if source not in declared:
                findings.problems.append(f"{name}: volume {source!r} is not declared under volumes:")
            hf_home = re.search(r"^ENV\s+HF_HOME=(\S+)", dockerfiles.get(name) or "", flags=re.M)
            if hf_home and source == "models" and target != hf_home.group(1):
                findings.problems.append(f"{name}: the models volume is mounted at {target}, HF_HOME is {hf_home.group(1)}")
    for unused in sorted(declared - used):
        findings.problems.append(f"volume {unused!r} is declared but no service uses it")


def check_variables(raw_text: str, root: Path, findings: Findings) -> None:
    referenced = {match.group(1) for match in VARIABLE.finditer(raw_text)}
    example = set(env_example(root))
    for missing in sorted(referenced - example):
        findings.problems.append(f"${{{missing}}} is used but not in .env.example")
    for unused in sorted(example - referenced):
        findings.problems.append(f".env.example sets {unused}, which the compose file does not use")


def problems(root: Path, text: str | None = None) -> Findings:
    import vecplug

    raw_text = text if text is not None else (root / "docker-compose.yml").read_text()
    compose = load(root, raw_text)
    findings = Findings()
    package_text = "\n".join(path.read_text() for path in Path(vecplug.__file__).parent.rglob("*.py"))
    dockerfiles = {}
    for name, service in compose["services"].items():
        dockerfiles[name] = check_build(name, service, root, findings)
        ports_of(service, name, findings)  # every published port on the loopback only
        check_vecplug_command(name, service, dockerfiles[name], set(compose["services"]), findings)
        check_environment(name, service, package_text, findings)
        for dependency, condition in (service.get("depends_on") or {}).items():
            if dependency not in compose["services"]:
                findings.problems.append(f"{name}: depends on {dependency}, which is no service")
    check_images(compose, root, findings)
    check_volumes(compose, dockerfiles, findings)
    check_variables(raw_text, root, findings)
    return findings


HOST_OVERRIDE = "docker/compose.host.yml"
SMOKE_SERVICES = ("postgres", "vecplug", "pg-install", "pg-worker")  # what scripts/compose_smoke.sh starts
URL_HOST = re.compile(r"(?:postgresql|https?)://(?:[^@/\s'\"]*@)?([^:/\s'\"]+)(?::(\d+))?")


def host_override_problems(root: Path, text: str | None = None) -> Findings:
    """docker/compose.host.yml against docker-compose.yml and the code: the smoke stack stays on the loopback.

    Every service the smoke starts is on the host network; every address in
    its commands and health checks is 127.0.0.1; the ports agree (the serve
    port, its health check and the --server-url of pg-install and pg-worker;
    PostgreSQL's port=, pg_isready and the DSNs); flags exist in the code.
    """
    base = load(root)["services"]
    override = load(root, text if text is not None else (root / HOST_OVERRIDE).read_text())["services"]
    findings = Findings()
    for name in sorted(set(override) - set(base)):
        findings.problems.append(f"{name}: in {HOST_OVERRIDE} but no service of docker-compose.yml")
    ports: dict[str, set[int]] = {"server": set(), "postgres": set()}
    for name in SMOKE_SERVICES:
        service = override.get(name, {})
        if service.get("network_mode") != "host":
            findings.problems.append(f"{name}: not on the host network (network_mode: host)")
        command = [str(part) for part in service.get("command") or []]
        healthcheck = [str(part) for part in service.get("healthcheck", {}).get("test", [])]
        words = command + healthcheck
        for word in words:
            if "0.0.0.0" in word:
                findings.problems.append(f"{name}: {word!r} binds every address, not 127.0.0.1")
            for host, port in URL_HOST.findall(word):
                if host != "127.0.0.1":
                    findings.problems.append(f"{name}: {word!r} names host {host}, not 127.0.0.1")
                if port:
                    ports["postgres" if word.startswith("postgresql") else "server"].add(int(port))
        if command[:1] == ["vecplug"]:
            click_command, rest = find_command(command)
            if click_command is None:
                findings.unchecked.append(f"{name}: `{' '.join(command[:3])}` is not in the code yet")
                continue
            options = parse_options(click_command, rest, name, findings)
            for flag in ("--host", "--metrics-host"):
                if flag in options and options[flag] != "127.0.0.1":
                    findings.problems.append(f"{name}: {flag} {options[flag]}, not 127.0.0.1")
            if click_command.name == "serve":
                ports["server"].add(int(options.get("--port") or option_default(click_command, "--port")))
        for index, word in enumerate(words):
            if word.startswith("port="):
                ports["postgres"].add(int(word.split("=", 1)[1]))
            if word == "-p" and index + 1 < len(words):
                ports["postgres"].add(int(words[index + 1]))
            if word == "listen_addresses=*":
                findings.problems.append(f"{name}: PostgreSQL listens on every address")
    for kind, found in ports.items():
        if len(found) != 1:
            findings.problems.append(f"the {kind} port differs between commands and health checks: {sorted(found)}")
    if ports["postgres"] & {5432}:
        findings.problems.append("PostgreSQL is on 5432, where a local PostgreSQL may already be")
    return findings


def dockerfile_base_images(root: Path) -> dict[str, str]:
    """Each Dockerfile's default BASE_IMAGE (the image it is built FROM unless the build says otherwise)."""
    defaults = {}
    for path in ("docker/vecplug/Dockerfile", "docker/postgres/Dockerfile"):
        text = (root / path).read_text()
        default = re.search(r"^ARG BASE_IMAGE=(\S+)", text, flags=re.M)
        builds_on_it = re.search(r"^FROM \$\{BASE_IMAGE\}\s*$", text, flags=re.M)
        defaults[path] = default.group(1) if default and builds_on_it else ""
    return defaults
