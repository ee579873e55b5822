-- The first and last valid_time each series' rows have ever had (both tables): reads without
-- a valid-time range are bounded by it, so they plan only the partitions that can hold rows.
-- Every write widens it in its transaction; nothing narrows it; `timedb create tables`
-- computes it again from the rows. No row: nothing is known, reads are not bounded.
CREATE TABLE IF NOT EXISTS series_extent (
    series_id   bigint PRIMARY KEY,
    valid_from  timestamptz NOT NULL,
    valid_until timestamptz NOT NULL
);
