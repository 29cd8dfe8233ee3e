# Two images from one file (docs/deployment.md):
#   docker build --target server -t unitscope-server .   # the dashboard, no torch
#   docker build --target worker -t unitscope-worker .   # the extraction job, torch with CUDA
#   docker build --target worker --build-arg PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu \
#       -t unitscope-worker-cpu .                         # torch's CPU wheels: no CUDA libraries
# Behind a TLS-intercepting proxy, pip in the build must trust its certificate:
#   docker build --build-arg CA_CERT="$(cat proxy-ca.pem)" ...   # one or more PEM certificates
# Every RUN that installs Python packages is, word for word, a setup command from the README, so an
# image cannot drift from the tested setup (tests/test_ship.py checks this); both install the versions
# CI tests (requirements.lock). No `# syntax=` line: it makes BuildKit fetch a frontend image from a
# registry, which an offline build cannot.

FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt
# pip trusts its own bundle unless told otherwise (PIP_CERT): the system's, with CA_CERT added when given.
ARG CA_CERT=""
RUN if [ -n "$CA_CERT" ]; then \
        printf '%s\n' "$CA_CERT" > /usr/local/share/ca-certificates/unitscope-build.crt && update-ca-certificates; \
    fi
# One unprivileged user owns /data (the database volume) and its cache (weights, default images) in both
# images; a named volume mounted there starts with this ownership, so the worker can write to it.
RUN groupadd --gid 10001 unitscope \
    && useradd --uid 10001 --gid 10001 --create-home unitscope \
    && mkdir /data /home/unitscope/.cache \
    && chown 10001:10001 /data /home/unitscope/.cache
WORKDIR /app
# Only what pip needs to resolve the dependencies: the code comes later, so editing it reuses the
# dependency layer. The install is editable, so the code copied afterwards is what runs.
COPY pyproject.toml README.md requirements.lock ./
COPY worker/__init__.py worker/
COPY app/__init__.py app/
COPY unitscope/__init__.py unitscope/

# The dashboard: FastAPI, DuckDB, Plotly; no torch.
FROM base AS server
RUN python3.11 -m venv .venv && .venv/bin/pip install -c requirements.lock -e .
COPY . .
USER 10001:10001
EXPOSE 8000
# /healthz answers 200 once a complete run is in the database; until then the container reports unhealthy.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/app/.venv/bin/python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
# 0.0.0.0 inside the container only; compose publishes the port on the host's 127.0.0.1 by default.
CMD ["/app/.venv/bin/python", "-m", "app", "--db", "/data/unitscope.duckdb", "--host", "0.0.0.0"]

# The extraction job: torch and torchvision from PyPI, whose Linux x86_64 wheels are the CUDA builds (3 GB),
# unless PIP_EXTRA_INDEX_URL names another index, e.g. torch's CPU wheels: pip then takes 2.14.1+cpu, which
# sorts above 2.14.1 (compose's worker-cpu does this).
FROM base AS worker
ARG PIP_EXTRA_INDEX_URL
RUN python3.11 -m venv .venv && .venv/bin/pip install -c requirements.lock -e '.[worker]'
COPY . .
USER 10001:10001
ENV UNITSCOPE_DB=/data/unitscope.duckdb
ENTRYPOINT ["/app/.venv/bin/python", "-m", "worker"]
CMD ["run"]
