"""HTTP handlers: one module per resource, function names are operationIds."""
