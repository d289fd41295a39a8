# voicecast controller image. Asterisk runs beside it (host or its own container): point
# [ami] and [pbx] of /etc/voicecast/voicecast.toml at it and share the sounds folder.
FROM debian:12-slim

RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       python3 python3-venv ffmpeg espeak-ng sox ca-certificates fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/voicecast
COPY pyproject.toml README.md ./
COPY voicecast ./voicecast
COPY migrations ./migrations
COPY asterisk-conf ./asterisk-conf
COPY sounds ./sounds
COPY examples ./examples
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir -e .

RUN useradd --system --home /var/lib/voicecast voicecast \
    && mkdir -p /var/lib/voicecast /etc/voicecast \
    && chown voicecast /var/lib/voicecast
USER voicecast
WORKDIR /var/lib/voicecast
ENV PATH=/opt/venv/bin:$PATH \
    VOICECAST_CONFIG=/etc/voicecast/voicecast.toml \
    VOICECAST_SANDBOX__ENABLED=false
EXPOSE 4573
CMD ["voicecast", "serve"]
