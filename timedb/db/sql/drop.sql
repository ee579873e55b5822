-- Remove every timedb table (data included).
DROP TABLE IF EXISTS idempotency_keys, overlapping, flat, batches_table, series_table, timedb_settings CASCADE;
