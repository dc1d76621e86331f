"""``vecplug serve``: the command, and running the app under uvicorn.

Only click (and the shared option definitions) is imported at module level: ``vecplug --help`` imports this.
"""
from __future__ import annotations

import click

from ..cli_options import api_key_file_option, model_options


@click.command()
@model_options(dimensions="Serve Matryoshka vectors cut to this size (requests may ask for fewer).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; 0.0.0.0 exposes the server to the network (set an API key then).")
@click.option("--port", type=click.IntRange(min=0, max=65535), default=8080, show_default=True,
              help="Port to bind; 0 picks a free one (the URL is printed on stderr).")
@click.option("--max-batch-tokens", type=click.IntRange(min=1), default=None,
              help="Real tokens per forward pass (default: the model's, 2,048 on CPU, 65,536 on GPU).")
@click.option("--max-queue-texts", type=click.IntRange(min=1), default=4096, show_default=True,
              help="Texts waiting at most; a request that does not fit gets 429 with Retry-After.")
@click.option("--max-request-bytes", type=click.IntRange(min=1), default=8 * 1024 * 1024, show_default=True,
              help="Largest request body; larger ones get 413 unread.")
@api_key_file_option()
@click.option("--served-name", default=None,
              help="Model name clients see and may send (default: the model's own name).")
@click.option("--request-timeout", type=click.FloatRange(min=0, min_open=True), default=60, show_default=True,
              help="Seconds a client may take to send a request's headers, then its body (a slower one is "
                   "cut off: the connection closed, or 408).")
@click.option("--answer-timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Seconds a request may wait for its answer, queueing included; a later one gets 504 and its "
                   "queued texts are dropped. Default: no limit (a client that gives up hangs up, which frees "
                   "its work).")
@click.option("--max-connections", type=click.IntRange(min=1), default=1024, show_default=True,
              help="Open connections at most; a request beyond them gets 503.")
@click.option("--graceful-timeout", type=click.FloatRange(min=0, min_open=True), default=30, show_default=True,
              help="On SIGTERM, seconds to finish the requests in flight; what is still queued then gets 503, "
                   "and the server exits within this time.")
@click.option("--access-log/--no-access-log", default=False, show_default=True, help="Log every request.")
def serve(model, device, dtype, dimensions, host, port, max_batch_tokens, max_queue_texts, max_request_bytes,
          api_key_file, served_name, request_timeout, answer_timeout, max_connections, graceful_timeout,
          access_log):
    """Serve one resident model over HTTP: OpenAI's /v1/embeddings, TEI's /embed, /health, /metrics."""
    from ..settings import Settings
    from .config import ServerConfig

    try:
        api_key = Settings(api_key_file=api_key_file).api_key_value()
        config = ServerConfig(model=model, device=device, dtype=dtype, dimensions=dimensions, host=host, port=port,
                              max_batch_tokens=max_batch_tokens, max_queue_texts=max_queue_texts,
                              max_request_bytes=max_request_bytes, api_key=api_key, served_name=served_name,
                              access_log=access_log, request_timeout=request_timeout,
                              answer_timeout=answer_timeout,
                              max_connections=max_connections, graceful_timeout=graceful_timeout)
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    from .lifecycle import exit_now

    exit_now(run(config))


def run(config) -> int:
    """Serve until SIGTERM or SIGINT; 0 after a drain, 1 when the model could not load (``lifecycle`` has the
    statuses)."""
    import logging
    import signal

    import uvicorn

    from ..registry import resolve
    from .app import create_app
    from .lifecycle import DrainingServer, http_protocol, uvicorn_drain_timeout

    resolve(config.model)  # an unknown name fails now, with the list of known ones, not after binding
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
    if config.host not in ("127.0.0.1", "localhost", "::1") and config.api_key is None:
        logging.getLogger("vecplug.server").warning(
            "listening on %s without an API key: anyone who can reach it can use it "
            "(set $VECPLUG_API_KEY or --api-key-file)", config.host)
    app = create_app(config)
    host = app.state.host
    sock = bind(config.host, config.port)
    address = sock.getsockname()
    shown = f"[{address[0]}]" if ":" in address[0] else address[0]
    click.echo(f"vecplug serve: listening on http://{shown}:{address[1]} (loading the model)", err=True)
    uvicorn_config = uvicorn.Config(app, access_log=config.access_log, log_level="info", lifespan="on",
                                    http=http_protocol(config.request_timeout),
                                    limit_concurrency=config.max_connections,
                                    timeout_graceful_shutdown=uvicorn_drain_timeout(config.graceful_timeout))
    server = DrainingServer(uvicorn_config, host, config.graceful_timeout)

    def stop_on_failure(error: str) -> None:
        server.should_exit = True

    app.state.on_failure = stop_on_failure
    # uvicorn raises a caught signal again once it has drained; a no-op handler makes that a clean exit 0
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if host.status == "failed":
        click.echo(f"Error: could not load the model: {host.error}", err=True)
        return 1
    return 0


def bind(host: str, port: int):
    """A listening socket, bound before uvicorn starts so that ``--port 0`` can report its port."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise click.ClickException(f"cannot listen on {host}:{port} ({error.strerror}); "
                                   "pick another --port or --host") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock
