# voicecast controller image: `voicecast serve` (dialer, FastAGI server, call-back line,
# webhooks, retention, web console / REST API / healthz / metrics) with ffmpeg and
# espeak-ng. Asterisk runs beside it (on the host or in its own container), reached over
# AMI and FastAGI; both must see the published sounds at the same path. docs/deployment.md
# tells how to run it:
#   docker build -t voicecast .
#   docker run -d --name voicecast --stop-timeout 60 \
#     -v /etc/voicecast/voicecast.toml:/etc/voicecast/voicecast.toml:ro \
#     -v voicecast-data:/var/lib/voicecast \
#     -v /var/lib/asterisk/sounds/voicecast:/var/lib/asterisk/sounds/voicecast \
#     -v /var/spool/asterisk/voicecast-replies:/var/spool/asterisk/voicecast-replies \
#     --network host voicecast
FROM debian:12-slim

# ffmpeg: audio conversion and loudness; espeak-ng: text-to-speech; fonts-dejavu-core: the
# PDF record of processing (voicecast register)
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       python3 python3-venv ffmpeg espeak-ng ca-certificates fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*

# a fixed uid/gid, so that files on volumes and NFS shares keep one owner across rebuilds
ARG VOICECAST_UID=10001
RUN groupadd --system --gid "${VOICECAST_UID}" voicecast \
    && useradd --system --uid "${VOICECAST_UID}" --gid voicecast \
       --home-dir /var/lib/voicecast --shell /usr/sbin/nologin voicecast \
    && install -d -o voicecast -g voicecast -m 0750 /var/lib/voicecast \
    && install -d -m 0755 /etc/voicecast

WORKDIR /opt/voicecast
COPY pyproject.toml README.md ./
COPY voicecast ./voicecast
COPY migrations ./migrations
COPY asterisk-conf ./asterisk-conf
COPY deploy ./deploy
COPY docs ./docs
COPY sounds ./sounds
COPY examples ./examples
# editable install: voicecast runs its alembic migrations from /opt/voicecast/migrations
# at start (voicecast.storage.db.migrations_dir)
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir -e . \
    && /opt/venv/bin/python -m compileall -q /opt/voicecast/voicecast /opt/voicecast/migrations \
    && /opt/venv/bin/voicecast --version

USER voicecast
WORKDIR /var/lib/voicecast
# VOICECAST_SANDBOX__ENABLED=false: the image never runs the sandbox PBX, whatever the
# config file says. The config file must use absolute paths (deploy/voicecast.toml).
ENV PATH=/opt/venv/bin:$PATH \
    VOICECAST_CONFIG=/etc/voicecast/voicecast.toml \
    VOICECAST_SANDBOX__ENABLED=false \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HEALTHCHECK_URL=http://127.0.0.1:8080/healthz
VOLUME ["/var/lib/voicecast"]
# FastAGI (Asterisk connects here) and the web console
EXPOSE 4573 8080
# SIGTERM: calls in progress get 30 s to finish; give `docker stop` more (--stop-timeout 60)
STOPSIGNAL SIGTERM
# 200 when the database, AMI, the dialer's scheduler and its writes are fine, else 503
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['HEALTHCHECK_URL'], timeout=4)"]
CMD ["voicecast", "serve"]
