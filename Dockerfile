# timedb API server. Configure with TIMEDB_DSN (or DATABASE_URL) at run time:
#   docker build -t timedb-api .
#   docker run -p 8000:8000 --stop-timeout 30 -e TIMEDB_DSN="postgresql://user:password@db:5432/timedb" timedb-api
# (--stop-timeout: longer than the server's 20 s graceful shutdown, so in-flight requests finish)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, at the versions of the lock file (`make lock` writes it from pyproject.toml),
# so source edits do not reinstall them.
COPY requirements/server.txt ./requirements/server.txt
RUN pip install -r requirements/server.txt

COPY openapi ./openapi
COPY timedb ./timedb
RUN pip install --no-deps . \
 && useradd --system --no-create-home --uid 10001 timedb

USER timedb
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD python -c "import urllib.request, sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"
STOPSIGNAL SIGTERM
# timedb api: uvicorn with timedb's client timeouts and a bounded graceful shutdown
CMD ["timedb", "api", "--host", "0.0.0.0", "--port", "8000", "--timeout-graceful-shutdown", "20"]
