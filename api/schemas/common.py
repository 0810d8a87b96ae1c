"""The building blocks of the OpenAPI document: the two error shapes, the security schemes, and the helpers
every API's schema module builds its operations with."""

from __future__ import annotations

ERROR = {"$ref": "#/components/schemas/Error"}
JOBS_ERROR = {"$ref": "#/components/schemas/JobsError"}
OBJECT = {"type": "object"}
OBJECTS = {"type": "array", "items": OBJECT}
BEARER: list[dict[str, list[str]]] = [{"bearer": []}]
API_KEY: list[dict[str, list[str]]] = [{"apiKey": []}]

REQUEST_ID = {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$",
              "description": "The request's `X-Request-Id` (the caller's if well-formed, else generated): quote it "
                             "when reporting a failure"}
# Every response carries it.
REQUEST_ID_HEADER = {"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}}

COMPONENTS = {
    "securitySchemes": {
        "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
        "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key",
                   "description": "`<api_key>.<api_secret>` of an integration user"},
    },
    "headers": {"X-Request-Id": {"description": REQUEST_ID["description"], "schema": REQUEST_ID}},
    "schemas": {
        "Error": {
            "type": "object", "required": ["code", "message", "request_id"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "request_id": REQUEST_ID},
        },
        "JobsError": {"type": "object", "required": ["error", "request_id"],
                      "properties": {"error": {"type": "string"}, "request_id": REQUEST_ID}},
    },
}

REASONS = {400: "Bad request", 401: "Missing or invalid credentials", 403: "Missing permission",
           404: "Not found", 408: "Timed out", 409: "Conflict", 410: "The job's result expired (RESULT_EXPIRED)",
           413: "Body too large",
           415: "Unsupported media type", 422: "Invalid parameter", 429: "Too many failed attempts",
           500: "Error", 503: "The metadata store or Temporal is unreachable; retry later"}


# A time of day as datetime.fromisoformat takes it after a date: HH:MM, seconds and microseconds optional, then an
# optional Z or UTC offset.
TIME_OF_DAY = (r"(?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{1,6})?)?"
               r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])?")


def calendar_day(sep: str = "") -> str:
    """A regular expression of the days of the calendar, ``YYYY{sep}MM{sep}DD``: years 0001 to 9999, the days
    each month has, February 29 of leap years (what ``datetime`` takes). ``[0-9]``, never ``\\d``: some regex
    engines take any Unicode digit for ``\\d``."""
    year = r"(?:[0-9]{3}[1-9]|[0-9]{2}[1-9][0-9]|[0-9][1-9][0-9]{2}|[1-9][0-9]{3})"
    leap = r"(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)"
    days = (rf"(?:0[1-9]|1[0-2]){sep}(?:0[1-9]|1[0-9]|2[0-8])|(?:0[13-9]|1[0-2]){sep}(?:29|30)"
            rf"|(?:0[13578]|1[02]){sep}31")
    return rf"(?:{year}{sep}(?:{days})|{leap}{sep}02{sep}29)"


def json_body(schema: dict, required: bool = True) -> dict:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def json_content(schema: dict) -> dict:
    return {"application/json": {"schema": schema}}


def responses(ok: dict, *errors: int, ok_status: int = 200, error_schema: dict = ERROR, media: str = "application/json",
              reasons: dict[int, str] = REASONS, other_reason: str = "Error") -> dict:
    """A responses object: the success schema and the listed error statuses in the dialect's shape, and 503
    (a dependency down), which any operation may answer."""
    out = {str(ok_status): {"description": "OK", "headers": REQUEST_ID_HEADER, "content": {media: {"schema": ok}}}}
    for status in (*errors, 503):
        out[str(status)] = {"description": reasons.get(status, other_reason), "headers": REQUEST_ID_HEADER,
                            "content": json_content(error_schema)}
    return out


def path_params(*names: str) -> list[dict]:
    return [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in names]


def operation(summary: str, tag: str, answers: dict, *, security: list | None = None,
              parameters: list | None = None, body: dict | None = None, **extra: object) -> dict:
    """An operation object; keys left as None stay out of the document."""
    op: dict = {"summary": summary, "tags": [tag]}
    if security is not None:
        op["security"] = security
    if parameters is not None:
        op["parameters"] = parameters
    if body is not None:
        op["requestBody"] = body
    op["responses"] = answers
    return op | extra
