# The bot image: one image, two processes (`bot serve`, `bot worker`), chosen by the command.
# No secrets are baked in: configuration comes from the environment at run time.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# ffmpeg decodes the voice messages customers send (AMR, Opus) before speech recognition.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/*

# Dependencies first, in their own layer: it is rebuilt only when pyproject.toml changes.
COPY pyproject.toml README.md ./
RUN pip install . && pip uninstall -y cs-bot

COPY bot ./bot
COPY adapters ./adapters
COPY workers ./workers
COPY knowledge ./knowledge
RUN pip install --no-deps . && rm -rf build ./*.egg-info

# The sample knowledge base (BOT_KNOWLEDGE_DIR points here unless a folder is mounted).
COPY examples ./examples

RUN useradd --create-home --uid 10001 --user-group bot \
    && mkdir -p /app/data \
    && chown bot:bot /app/data
USER bot

# Build jieba's dictionary cache now, as the user that reads it, so each process starts
# without the one-second dictionary build.
RUN python -c "from knowledge.text.tokenize import tokenize; tokenize('预热词典')"

ENV BOT_HOST=0.0.0.0 \
    BOT_PORT=8080 \
    BOT_DATA_DIR=/app/data \
    BOT_KNOWLEDGE_DIR=/app/examples/knowledge
EXPOSE 8080
VOLUME ["/app/data"]

ENTRYPOINT ["bot"]
CMD ["serve"]
