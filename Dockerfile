# referral-bot: `docker build -t referral-bot .`, or `docker compose up` with compose.yaml.
# Two stages: the virtual environment is built from pyproject.toml, and only it is copied into
# the final image, which runs as an unprivileged user with its state in the /app/data volume.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY commands ./commands
COPY config ./config
COPY storage ./storage
RUN /opt/venv/bin/pip install .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --user-group --home-dir /app --shell /usr/sbin/nologin bot \
    && mkdir -p /app/data \
    && chown bot:bot /app/data
COPY --from=build /opt/venv /opt/venv
# The console needs a terminal, so it is off; the health listener is on inside the container.
ENV PATH="/opt/venv/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    REFERRAL_BOT_CONSOLE__ENABLED=false \
    REFERRAL_BOT_HTTP__LISTEN=0.0.0.0:8080
WORKDIR /app
USER bot
VOLUME ["/app/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-m", "bot.http.probe"]
ENTRYPOINT ["referral-bot"]
CMD ["run"]
