"""timedb: a REST API server for time series whose values get revised."""

__version__ = "0.3.0"
