"""The data layer: the only package that imports psycopg and psycopg_pool (tests/unit/test_layers.py
keeps it so); the rest of timedb meets the database through its functions and timedb.errors."""
