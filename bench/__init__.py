"""timedb benchmark: the real server over HTTP against raw PostgreSQL, same run, same database."""
