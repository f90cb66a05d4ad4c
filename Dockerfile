# The gateway and CLI, for people who run docker-compose.yml.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY recsys ./recsys
COPY graph ./graph
COPY hunchio ./hunchio
COPY gateway ./gateway
RUN pip install --no-cache-dir .
# 0.0.0.0 inside the container: on 127.0.0.1 the published port reaches nothing
# (compose publishes it on the host's 127.0.0.1 only).
ENV HUNCH_HOME=/data \
    HUNCH_HOST=0.0.0.0
VOLUME /data
EXPOSE 8000
# Imports and trains the demo only into an empty /data: a restart keeps stored events.
CMD ["hunch", "demo"]
