"""``vecplug serve``: one resident model for many clients over HTTP.

Modules, each with one job:

- ``cli``: the ``vecplug serve`` command (click only; everything heavy loads
  when the command runs, so ``vecplug --help`` stays instant)
- ``config``: the server's settings, checked once
- ``engine``: loads the model in its own thread, warms it up, owns it
- ``batching``: merges the texts of concurrent requests into the engine's
  token-budget batches, tokenizing while the previous batch runs
- ``schemas``: request and response bodies (OpenAI and TEI), input checks
- ``errors``: API flavours (OpenAI, TEI): their error bodies and statuses
- ``routes``: the route table: each route once, with its flavour, request
  model and answer; everything else reads the table
- ``middleware``: request size limit, API key, refusing work while draining
- ``metrics``: Prometheus counters, gauges and histograms
- ``handling``: what the routes share: read and check a body, readiness,
  dimensions, queue and wait, drop a request whose client left
- ``openapi``: the schema, with the served model's limits in it
- ``app``: the FastAPI app built from the route table, and its error handlers

The header names the client reads too live in ``vecplug.wire``.
"""
