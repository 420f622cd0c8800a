# The stepstream worker image used by docker-compose.yml.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas schemas
COPY workflows workflows
COPY agents agents
COPY streams streams
COPY steps steps
COPY infra infra
COPY scripts scripts
RUN pip install --no-cache-dir .
USER nobody
CMD ["stepstream", "worker"]
