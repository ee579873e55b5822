#!/usr/bin/env bash
# What the request observer (X-Request-ID, GET /metrics' numbers; issue 12) costs per request:
# the same code served twice, once with the observer passing requests through (observer_off.py),
# wrk on the smallest requests, rounds alternating. Needs wrk and a PostgreSQL (TIMEDB_BENCH_DSN,
# default: a database `obsbench` on 127.0.0.1:5432, re-created).
set -euo pipefail
cd "$(dirname "$0")/.."
base=${TIMEDB_BENCH_DSN:-postgresql://postgres@127.0.0.1:5432/postgres}
dsn=$(.venv/bin/python -c "import sys; from psycopg.conninfo import make_conninfo; print(make_conninfo(sys.argv[1], dbname='obsbench'))" "$base")
psql "$base" -qc "DROP DATABASE IF EXISTS obsbench" -c "CREATE DATABASE obsbench"
.venv/bin/python -c "import sys; from timedb.db.schema import create_tables; create_tables(sys.argv[1])" "$dsn"
serve() { TIMEDB_DSN=$dsn TIMEDB_AUTH=none PYTHONPATH=bench .venv/bin/python -m uvicorn "$1" --port "$2" \
  --no-access-log --http timedb.server:HttpProtocol >/dev/null 2>&1 & }
serve observer_off:app 8103
serve timedb.api:app 8104
trap 'kill $(jobs -p) 2>/dev/null' EXIT
sleep 4
series=$(.venv/bin/python -c "import json; print(json.dumps({'series': [{'name': f's{i}', 'labels': {'site': str(i % 50)}} for i in range(2000)]}))")
curl -sf -X POST localhost:8104/series/bulk -H 'Content-Type: application/json' -d "$series" >/dev/null
for path in /series/count /healthz; do
  for round in 1 2 3; do
    for port in 8103 8104; do
      side=$([ $port = 8103 ] && echo without || echo with)
      echo "$path round $round $side: $(wrk -t2 -c16 -d8s "http://127.0.0.1:$port$path" | awk '/Requests\/sec/ {print $2}') req/s"
    done
  done
done
