# The infernet-node image: the node served by hypercorn, as a non-root user, with its config
# at /app/config.json (or wherever INFERNET_CONFIG_PATH points).
#
#   docker build -t infernet-core .                         # from PyPI (needs the network)
#   docker build -t infernet-core --build-arg EXTRAS=chain,docker .    # with the on-chain side
#
# Offline: put wheels of every dependency (and of the build backend, setuptools and wheel)
# in ./wheels and the build never touches an index; tests/docker/image_support.py makes that
# directory from requirements/test.lock (the versions the test suite runs).
#
# Build arguments:
#   BASE    the Python image both stages start from (python3 with venv, on a Debian-like
#           system with useradd); the tests use a Debian root filesystem of their own
#   EXTRAS  the project's extras to install ("docker": managed containers; "chain": on-chain
#           subscriptions; "" for neither)
#   WHEELS  the directory of the build context holding the offline wheels (if it holds none,
#           dependencies come from the index)
#
# The node runs as user infernet (uid and gid 10001); `infernet-node` is the entry point, so
# arguments after the image name are its own (default: serve).

ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS builder
ARG EXTRAS=docker WHEELS=wheels
# The project is always built from its source here; only where its dependencies come from
# differs: the wheels directory (no network) when it holds any wheels, else the index. pip
# itself is removed from the result: the node's image installs nothing at run time.
COPY . /src
RUN set -eu; \
    export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore; \
    python3 -m venv /opt/infernet; \
    if ls /src/"$WHEELS"/*.whl >/dev/null 2>&1; then \
        echo "dependencies from /src/$WHEELS (no index)"; \
        set -- --no-index --find-links "/src/$WHEELS"; \
    fi; \
    spec=/src; \
    if [ -n "$EXTRAS" ]; then spec="/src[$EXTRAS]"; fi; \
    /opt/infernet/bin/pip install "$@" "$spec"; \
    /opt/infernet/bin/pip uninstall --yes --quiet pip; \
    /opt/infernet/bin/infernet-node --help >/dev/null

# The metadata comes first: on the classic builder each instruction copies the image so far,
# and it is smallest here.
FROM ${BASE}
ENV PATH="/opt/infernet/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    INFERNET_CONFIG_PATH=/app/config.json
# /app is the node's working directory: config.json is read from it and the default SQLite
# store (a config that names no store) is written to it, so the node's user owns it.
WORKDIR /app
EXPOSE 4000
# SIGTERM stops the node cleanly: no new requests, running jobs get shutdown_grace seconds,
# any still running are failed ("node stopped before the job finished"), exit status 0.
# Give `docker stop` (compose: stop_grace_period) more time than shutdown_grace.
STOPSIGNAL SIGTERM
# GET /health on the port the config names (server.port, default 4000), or at
# INFERNET_HEALTH_URL when set; standard library only, and never through a proxy.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import json,os,urllib.request as u;c=os.environ.get('INFERNET_CONFIG_PATH') or '';s=json.load(open(c)).get('server') or {} if os.path.isfile(c) else {};url=os.environ.get('INFERNET_HEALTH_URL') or 'http://127.0.0.1:%s/health' % s.get('port', 4000);u.build_opener(u.ProxyHandler({})).open(url, timeout=4).read()"]
ENTRYPOINT ["infernet-node"]
RUN groupadd --system --gid 10001 infernet \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin infernet \
    && chown 10001:10001 /app
COPY --from=builder /opt/infernet /opt/infernet
USER 10001:10001
