"""The data layer: the only package that imports psycopg."""
