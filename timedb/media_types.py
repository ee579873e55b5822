"""The media types timedb reads and writes, named once."""

JSON = "application/json"
CSV = "text/csv"
NDJSON = "application/x-ndjson"
ARROW = "application/vnd.apache.arrow.stream"
HTML = "text/html"

# the Content-Type header of a JSON answer a handler returns as a (body, status, headers) tuple
JSON_HEADERS = {"Content-Type": JSON}
