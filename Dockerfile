# streamapp image: the Faust worker (APP_MODE=web) or JupyterLab (APP_MODE=jupyter).
# Build: docker compose build   (or: docker build -t streamapp:local .)
# Offline: make wheelhouse, then docker build --build-arg OFFLINE=1 -t streamapp:local .
# (installs from ./wheelhouse with no package index at all).
# PYTHON_IMAGE swaps the base (CI builds on a local stand-in; the default is official).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ------------------------------------------------------------------ build stage
# Everything is installed into the virtualenv /opt/venv; only that venv reaches the
# final stage (no pip cache, no wheelhouse, no build backend).
FROM ${PYTHON_IMAGE} AS build
ARG OFFLINE=0

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1 \
    PIP_NO_CACHE_DIR=1

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /build

# The wheelhouse (make wheelhouse) if there is one; setup.cfg only keeps the COPY
# valid when ./wheelhouse is absent.
COPY setup.cfg wheelhous[e] /wheelhouse/

# 1. Dependencies only, in a layer that is rebuilt only when setup.cfg (or the
#    optional constraints.txt) changes: install_requires + the notebook extra.
COPY setup.cfg pyproject.toml constraints.tx[t] ./
RUN python -c 'import configparser; c = configparser.ConfigParser(interpolation=None); c.read("setup.cfg"); print(c["options"]["install_requires"]); print(c["options.extras_require"]["notebook"])' > /tmp/requirements.txt \
    && index=() \
    && if [ "$OFFLINE" = 1 ]; then \
        if ! compgen -G '/wheelhouse/*.whl' >/dev/null; then \
            echo "OFFLINE=1 needs the wheels in ./wheelhouse: run make wheelhouse" >&2; exit 1; \
        fi; \
        index=(--no-index --find-links /wheelhouse); \
    fi \
    && constraints=() \
    && if [ -f constraints.txt ]; then constraints=(--constraint constraints.txt); fi \
    && python -m venv /opt/venv \
    && /opt/venv/bin/pip install --quiet "${index[@]}" --requirement /tmp/requirements.txt "${constraints[@]}" \
    && rm /tmp/requirements.txt

# 2. The package itself (no dependency resolution: they are all above).
COPY setup.cfg README.m[d] ./
COPY streamapp/ streamapp/
COPY agents/ agents/
COPY models/ models/
RUN index=() \
    && if [ "$OFFLINE" = 1 ]; then index=(--no-index --find-links /wheelhouse); fi \
    && /opt/venv/bin/pip install --quiet "${index[@]}" --no-deps . \
    && /opt/venv/bin/pip check

# 3. Leaner: the test suites of the big scientific packages and the C/C++/Cython
#    sources and headers (only needed to compile against them) stay behind.
RUN site=/opt/venv/lib/python3.11/site-packages \
    && find "$site"/numpy "$site"/pandas "$site"/pyarrow "$site"/matplotlib \
        "$site"/mpl_toolkits -depth -type d -name tests -exec rm -rf {} + \
    && find "$site" -type f \( -name '*.h' -o -name '*.hpp' -o -name '*.c' -o -name '*.cc' \
        -o -name '*.cpp' -o -name '*.pxd' -o -name '*.pyx' -o -name '*.pxi' \) -delete

# ------------------------------------------------------------------ final stage
FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH

# A non-root user; /app is its working directory (Faust keeps <APP_ID>-data there).
RUN useradd --create-home --uid 10001 --user-group --shell /usr/sbin/nologin streamapp \
    && install -d -o streamapp -g streamapp /app

COPY --from=build /opt/venv /opt/venv

# Run from /app as the non-root user, with the notebooks Jupyter serves.
WORKDIR /app
COPY --chown=streamapp:streamapp notebooks/ notebooks/
USER 10001:10001

# APP_MODE (web | jupyter) comes from the environment: docker-compose.yml sets it.
EXPOSE 6066 8888

# Probes /health (web) or the Jupyter API (jupyter), whichever APP_MODE runs.
HEALTHCHECK --interval=30s --timeout=10s --start-period=90s --retries=3 \
    CMD ["streamapp-entrypoint", "--healthcheck"]

ENTRYPOINT ["streamapp-entrypoint"]
