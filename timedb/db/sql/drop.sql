-- Remove every timedb table (data included).
DROP TABLE IF EXISTS series_extent, api_tokens, idempotency_keys, overlapping, flat, batches_table, series_table, timedb_settings CASCADE;
DROP FUNCTION IF EXISTS timedb_tokens_changed() CASCADE;
DROP FUNCTION IF EXISTS timedb_ensure_partitions(regclass, timestamptz[]);
