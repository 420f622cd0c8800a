# The stepstream worker image used by docker-compose.yml.
FROM python:3.11-slim
COPY . /src
RUN pip install --no-cache-dir /src && rm -rf /src
WORKDIR /var/tmp
USER nobody
CMD ["stepstream", "worker"]
