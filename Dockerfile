# The gateway and CLI, for people who run docker-compose.yml.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY recsys ./recsys
COPY graph ./graph
COPY gateway ./gateway
RUN pip install --no-cache-dir .
ENV HUNCH_HOME=/data
VOLUME /data
EXPOSE 8000
CMD ["hunch", "demo"]
