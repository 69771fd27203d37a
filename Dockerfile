# streamapp image: the Faust worker (APP_MODE=web) or JupyterLab (APP_MODE=jupyter).
# Build: docker compose build   (or: docker build -t streamapp:local .)
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# A non-root user; /app is its working directory (Faust keeps <APP_ID>-data there).
RUN useradd --create-home --uid 10001 --user-group --shell /usr/sbin/nologin streamapp \
    && install -d -o streamapp -g streamapp /app

WORKDIR /build

# 1. Dependencies only, in a layer that is rebuilt only when setup.cfg (or the
#    optional constraints.txt) changes: install_requires + the notebook extra.
COPY setup.cfg pyproject.toml constraints.tx[t] ./
RUN python -c 'import configparser; c = configparser.ConfigParser(interpolation=None); c.read("setup.cfg"); print(c["options"]["install_requires"]); print(c["options.extras_require"]["notebook"])' > /tmp/requirements.txt \
    && constraints=() \
    && if [ -f constraints.txt ]; then constraints=(--constraint constraints.txt); fi \
    && pip install --no-cache-dir --requirement /tmp/requirements.txt "${constraints[@]}" \
    && rm /tmp/requirements.txt

# 2. The package itself (no dependency resolution: they are all above).
COPY setup.cfg README.m[d] ./
COPY streamapp/ streamapp/
COPY agents/ agents/
COPY models/ models/
RUN pip install --no-cache-dir --no-deps . \
    && pip check \
    && rm -rf build ./*.egg-info

# 3. Run from /app as the non-root user, with the notebooks Jupyter serves.
WORKDIR /app
COPY --chown=streamapp:streamapp notebooks/ notebooks/
USER 10001:10001

# APP_MODE (web | jupyter) comes from the environment: docker-compose.yml sets it.
EXPOSE 6066 8888

# Probes /health (web) or the Jupyter API (jupyter), whichever APP_MODE runs.
HEALTHCHECK --interval=30s --timeout=10s --start-period=90s --retries=3 \
    CMD ["streamapp-entrypoint", "--healthcheck"]

ENTRYPOINT ["streamapp-entrypoint"]
