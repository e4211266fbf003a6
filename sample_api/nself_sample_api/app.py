"""WSGI application for the nself sample shop.

The stack's operations tooling needs a real service to deploy, scale, benchmark and
diagnose, so this API does ordinary shop work against PostgreSQL and Redis and adds a
few endpoints that exist only to be measured (``/api/cpu``, ``/api/delay``) or to
prove resource limits (``/api/debug/allocate``).

Configuration is read once, from the environment, when gunicorn first looks up
``application`` in this module (see ``__getattr__`` at the bottom): a worker with a
broken configuration therefore fails to boot instead of answering 500s. Importing the
module itself reads nothing, which keeps the pure helpers unit-testable.

Environment:

``NSELF_API_CONFIG``
    Path of a ``KEY=VALUE`` file (mode 0600, it holds secrets). Non-empty environment
    variables of the same names override what the file says.
``DATABASE_URL``
    libpq connection string or URL, password included. Required.
``REDIS_URL``
    ``redis://:password@127.0.0.1:port/0``. Required.
``NSELF_REPLICA``
    Name of this replica, sent back in ``X-Replica`` on every response
    (default: the host name).
``NSELF_DB_POOL_SIZE``
    Connections per worker process (default 4).
``NSELF_DB_POOL_TIMEOUT``
    Seconds a request waits for a pooled connection before answering 503 (default 5).
``NSELF_DB_PREPARE_THRESHOLD``
    psycopg's automatic server-side prepare threshold (default 5); ``off`` disables
    it, which is needed behind a PgBouncer in transaction mode that does not track
    prepared statements.
``NSELF_PRODUCTS_CACHE_TTL``
    Seconds the product list stays in Redis (default 5, 0 turns the cache off).
``NSELF_API_DEBUG``
    ``1`` enables ``/api/debug/allocate``; otherwise that path is an ordinary 404.
``NSELF_API_LOG_LEVEL``
    Level of the ``nself.api`` logger (default INFO).
"""

import atexit
import http
import json
import logging
import mmap
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from functools import cached_property
from typing import Any
from urllib.parse import parse_qs

import psycopg
import psycopg.conninfo
import psycopg_pool
import redis
import redis.backoff
import redis.connection
import redis.retry
from psycopg.rows import dict_row

log = logging.getLogger("nself.api")

MIB = 1024 * 1024
# Largest value a bigint id column can hold; larger ids cannot exist, so they are
# rejected as bad input rather than sent to the database.
MAX_ID = 2**63 - 1
MAX_BODY_BYTES = 64 * 1024
MAX_QUANTITY = 1000
MAX_ORDER_LINES = 50
MAX_AMOUNT = Decimal("9999999999.99")
CENT = Decimal("0.01")

USERS_LIMIT_DEFAULT = 20
PRODUCTS_LIMIT_DEFAULT = 20
ORDERS_LIMIT_DEFAULT = 50
LIST_LIMIT_MAX = 100

CPU_DEFAULT_N = 20_000
# Roughly a second of work on one core: enough to saturate a worker for scaling
# benchmarks, short enough that no request gets near gunicorn's timeout.
CPU_MAX_N = 2_000_000
DELAY_MAX_MS = 10_000
DEBUG_ALLOCATE_MAX_MB = 65_536

CACHE_PREFIX = "nself:"

_TRUE_WORDS = {"1", "true", "yes", "on"}
_FALSE_WORDS = {"0", "false", "no", "off", ""}
_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# The replica name goes verbatim into a response header, so it must be a plain token.
_REPLICA_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}\Z")
_INT_RE = re.compile(r"[+-]?[0-9]{1,19}\Z")


# --------------------------------------------------------------------------------------
# Configuration


class ConfigError(Exception):
    """The environment or the config file cannot be turned into a Config.

    Messages never quote values: the values are connection strings with passwords.
    """


def parse_config_text(text: str, source: str = "config") -> dict[str, str]:
    """Parse ``KEY=VALUE`` lines.

    Blank lines and lines starting with ``#`` are skipped, an ``export`` prefix is
    allowed, and one pair of matching quotes around a value is removed. There are no
    trailing comments: ``#`` is a legitimate password character. A later line for the
    same key wins, as it would in a shell.
    """
    values: dict[str, str] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(("export ", "export\t")):
            line = line[len("export") :].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not _KEY_RE.match(key):
            raise ConfigError(f"{source}, line {lineno}: expected KEY=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def read_config_file(path: str) -> dict[str, str]:
    try:
        with open(path, encoding="utf-8-sig") as fh:
            mode = os.fstat(fh.fileno()).st_mode
            text = fh.read()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not valid UTF-8") from None
    if mode & 0o077:
        log.warning(
            "%s is accessible to group or others (mode %o); it holds secrets and "
            "should be 0600",
            path,
            mode & 0o777,
        )
    return parse_config_text(text, source=path)


def merge_settings(
    file_values: Mapping[str, str], environ: Mapping[str, str]
) -> dict[str, str]:
    """Environment wins over the file, except that an empty variable counts as unset.

    Process managers often export a variable as empty when a template had no value;
    letting that blank out a password from the file would be a confusing failure.
    """
    merged = dict(file_values)
    merged.update({k: v for k, v in environ.items() if v != ""})
    return merged


def setting_int(
    settings: Mapping[str, str], name: str, default: int, minimum: int, maximum: int
) -> int:
    text = settings.get(name, "").strip()
    if not text:
        return default
    if not _INT_RE.match(text):
        raise ConfigError(f"{name} must be an integer")
    value = int(text)
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name} must be between {minimum} and {maximum}")
    return value


def setting_bool(settings: Mapping[str, str], name: str) -> bool:
    text = settings.get(name, "").strip().lower()
    if text in _TRUE_WORDS:
        return True
    if text in _FALSE_WORDS:
        return False
    raise ConfigError(f"{name} must be 1 or 0")


@dataclass(frozen=True)
class Config:
    database_url: str = field(repr=False)
    redis_url: str = field(repr=False)
    replica: str
    db_pool_size: int = 4
    db_pool_timeout: float = 5.0
    prepare_threshold: int | None = 5
    products_cache_ttl: int = 5
    debug: bool = False
    log_level: str = "INFO"


def load_config(environ: Mapping[str, str]) -> Config:
    path = environ.get("NSELF_API_CONFIG", "").strip()
    file_values = read_config_file(path) if path else {}
    settings = merge_settings(file_values, environ)

    database_url = settings.get("DATABASE_URL", "").strip()
    if not database_url:
        raise ConfigError("DATABASE_URL is not set (environment or NSELF_API_CONFIG)")
    try:
        psycopg.conninfo.conninfo_to_dict(database_url)
    except psycopg.Error:
        raise ConfigError(
            "DATABASE_URL is not a valid libpq connection string"
        ) from None

    redis_url = settings.get("REDIS_URL", "").strip()
    if not redis_url:
        raise ConfigError("REDIS_URL is not set (environment or NSELF_API_CONFIG)")
    try:
        redis.connection.parse_url(redis_url)
    except ValueError:
        raise ConfigError(
            "REDIS_URL is not a valid redis://, rediss:// or unix:// URL"
        ) from None

    replica = settings.get("NSELF_REPLICA", "").strip() or socket.gethostname()
    if not _REPLICA_RE.match(replica):
        raise ConfigError("NSELF_REPLICA must be 1-63 letters, digits, '.', '_' or '-'")

    threshold_text = settings.get("NSELF_DB_PREPARE_THRESHOLD", "").strip().lower()
    if threshold_text in ("off", "none", "disabled"):
        prepare_threshold = None
    else:
        prepare_threshold = setting_int(
            settings, "NSELF_DB_PREPARE_THRESHOLD", 5, 0, 1_000_000
        )

    log_level = settings.get("NSELF_API_LOG_LEVEL", "INFO").strip().upper() or "INFO"
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError("NSELF_API_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR")

    return Config(
        database_url=database_url,
        redis_url=redis_url,
        replica=replica,
        db_pool_size=setting_int(settings, "NSELF_DB_POOL_SIZE", 4, 1, 200),
        db_pool_timeout=float(
            setting_int(settings, "NSELF_DB_POOL_TIMEOUT", 5, 1, 300)
        ),
        prepare_threshold=prepare_threshold,
        products_cache_ttl=setting_int(
            settings, "NSELF_PRODUCTS_CACHE_TTL", 5, 0, 3600
        ),
        debug=setting_bool(settings, "NSELF_API_DEBUG"),
        log_level=log_level,
    )


# --------------------------------------------------------------------------------------
# HTTP plumbing


class HTTPError(Exception):
    """Raised anywhere in a handler to answer with a JSON error."""

    def __init__(
        self,
        status: int,
        message: str,
        headers: list[tuple[str, str]] | None = None,
        **details: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or []
        self.details = details

    def response(self) -> "Response":
        payload = {"error": self.message, **self.details}
        return json_response(self.status, payload, self.headers)


@dataclass
class Response:
    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)


def _json_default(value: Any) -> Any:
    # Money columns are numeric(…, 2): as floats they print exactly as stored
    # ("12.3", "499.99"), and clients get numbers rather than strings.
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def encode_json(payload: Any) -> bytes:
    return json.dumps(
        payload, default=_json_default, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


def json_response(
    status: int, payload: Any, headers: list[tuple[str, str]] | None = None
) -> Response:
    return Response(status, encode_json(payload), list(headers or []))


def status_line(status: int) -> str:
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    return f"{status} {phrase}"


class Router:
    """Maps (method, path) to a target; patterns may hold ``{name}`` segments.

    A path that matches a pattern under another method gives 405 with ``Allow``, a
    path that matches nothing gives 404. HEAD is answered wherever GET is.
    """

    _SEGMENT_RE = re.compile(r"\{([a-z_]+)\}")

    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], dict[str, Any]]] = []

    def add(self, method: str, pattern: str, target: Any) -> None:
        method = method.upper()
        for existing, _regex, targets in self._routes:
            if existing == pattern:
                targets[method] = target
                return
        parts = []
        for part in pattern.split("/"):
            segment = self._SEGMENT_RE.fullmatch(part)
            parts.append(
                f"(?P<{segment.group(1)}>[^/]+)" if segment else re.escape(part)
            )
        regex = re.compile("/".join(parts) + r"\Z")
        self._routes.append((pattern, regex, {method: target}))

    def resolve(self, method: str, path: str) -> tuple[Any, dict[str, str]]:
        method = method.upper()
        lookup = "GET" if method == "HEAD" else method
        for _pattern, regex, targets in self._routes:
            match = regex.match(path)
            if match is None:
                continue
            if lookup in targets:
                return targets[lookup], match.groupdict()
            allowed = set(targets)
            if "GET" in allowed:
                allowed.add("HEAD")
            allow = ", ".join(sorted(allowed))
            raise HTTPError(
                405,
                f"method {method} not allowed for {path}",
                headers=[("Allow", allow)],
                allowed=sorted(allowed),
            )
        raise HTTPError(404, f"no such endpoint: {path}")


# --------------------------------------------------------------------------------------
# Input validation. Each helper raises HTTPError(400) with a message that names the
# offending parameter, so a load-test script author can fix the request from the
# response alone.


def parse_query_string(query_string: str) -> dict[str, str]:
    try:
        parsed = parse_qs(
            query_string, keep_blank_values=True, max_num_fields=50, errors="strict"
        )
    except ValueError:
        raise HTTPError(
            400, "query string is malformed or has too many fields"
        ) from None
    result: dict[str, str] = {}
    for name, values in parsed.items():
        if len(values) > 1:
            raise HTTPError(400, f"query parameter '{name}' given more than once")
        result[name] = values[0]
    return result


def _parse_int_text(text: str) -> int | None:
    text = text.strip()
    if not _INT_RE.match(text):
        return None
    return int(text)


def query_int(
    query: Mapping[str, str],
    name: str,
    *,
    default: int | None = None,
    minimum: int,
    maximum: int,
    clamp: bool = False,
) -> int:
    """An integer query parameter; ``default=None`` makes it required.

    With ``clamp`` a value above ``maximum`` is lowered to it (list limits, CPU work),
    otherwise it is rejected. Values below ``minimum`` are always rejected.
    """
    text = query.get(name)
    if text is None or text.strip() == "":
        if default is None:
            raise HTTPError(400, f"query parameter '{name}' is required")
        return default
    value = _parse_int_text(text)
    if value is None:
        raise HTTPError(400, f"query parameter '{name}' must be an integer")
    if value < minimum:
        raise HTTPError(400, f"query parameter '{name}' must be at least {minimum}")
    if value > maximum:
        if clamp:
            return maximum
        raise HTTPError(400, f"query parameter '{name}' must be at most {maximum}")
    return value


def path_id(params: Mapping[str, str], name: str, what: str) -> int:
    value = _parse_int_text(params.get(name, ""))
    if value is None or not 1 <= value <= MAX_ID:
        raise HTTPError(400, f"{what} id must be a positive integer")
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def read_json_body(environ: Mapping[str, Any], max_bytes: int = MAX_BODY_BYTES) -> dict:
    """The request body as a JSON object.

    The Content-Type is not checked: ``curl -d`` sends form encoding by default and
    refusing that would only get in the way of people poking at the API by hand.
    Numbers with a fraction are parsed as Decimal so amounts keep their cents.
    """
    length_text = (environ.get("CONTENT_LENGTH") or "").strip()
    stream = environ.get("wsgi.input")
    if length_text:
        if not length_text.isdigit():
            raise HTTPError(400, "Content-Length is not a number")
        length = int(length_text)
        if length > max_bytes:
            raise HTTPError(413, f"request body is larger than {max_bytes} bytes")
        raw = stream.read(length) if (stream is not None and length) else b""
    elif "chunked" in (environ.get("HTTP_TRANSFER_ENCODING") or "").lower():
        raw = stream.read(max_bytes + 1) if stream is not None else b""
        if len(raw) > max_bytes:
            raise HTTPError(413, f"request body is larger than {max_bytes} bytes")
    else:
        raw = b""
    if not raw.strip():
        raise HTTPError(400, "request body must be a JSON object")
    try:
        data = json.loads(raw, parse_float=Decimal, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError):
        raise HTTPError(400, "request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise HTTPError(400, "request body must be a JSON object")
    return data


def body_int(
    body: Mapping[str, Any],
    name: str,
    *,
    minimum: int = 1,
    maximum: int = MAX_ID,
    label: str | None = None,
) -> int:
    label = label or f"field '{name}'"
    if name not in body or body[name] is None:
        raise HTTPError(400, f"{label} is required")
    value = body[name]
    # bool is a subclass of int; true/false are never meant as ids or quantities.
    if isinstance(value, bool) or not isinstance(value, int):
        raise HTTPError(400, f"{label} must be an integer")
    if not minimum <= value <= maximum:
        raise HTTPError(400, f"{label} must be between {minimum} and {maximum}")
    return value


def body_amount(body: Mapping[str, Any], name: str) -> Decimal:
    if name not in body or body[name] is None:
        raise HTTPError(400, f"field '{name}' is required")
    value = body[name]
    if isinstance(value, bool):
        raise HTTPError(400, f"field '{name}' must be a number")
    try:
        if isinstance(value, (int, Decimal)):
            amount = Decimal(value)
        elif isinstance(value, str):
            amount = Decimal(value.strip())
        else:
            raise InvalidOperation
    except InvalidOperation:
        raise HTTPError(400, f"field '{name}' must be a number") from None
    if not amount.is_finite() or amount <= 0:
        raise HTTPError(400, f"field '{name}' must be a positive amount")
    if amount > MAX_AMOUNT:
        raise HTTPError(400, f"field '{name}' must be at most {MAX_AMOUNT}")
    if amount != amount.quantize(CENT):
        raise HTTPError(400, f"field '{name}' must not have more than two decimals")
    return amount.quantize(CENT)


def body_order_lines(body: Mapping[str, Any]) -> list[tuple[int, int]]:
    """``items`` as (product_id, quantity) pairs, duplicates merged, in id order."""
    items = body.get("items")
    if items is None:
        raise HTTPError(400, "field 'items' is required")
    if not isinstance(items, list) or not items:
        raise HTTPError(400, "field 'items' must be a non-empty list")
    if len(items) > MAX_ORDER_LINES:
        raise HTTPError(400, f"field 'items' may hold at most {MAX_ORDER_LINES} lines")
    pairs: list[tuple[int, int]] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise HTTPError(400, f"items[{index}] must be an object")
        product_id = body_int(item, "product_id", label=f"items[{index}].product_id")
        quantity = body_int(
            item,
            "quantity",
            maximum=MAX_QUANTITY,
            label=f"items[{index}].quantity",
        )
        pairs.append((product_id, quantity))
    merged = merge_lines(pairs)
    for product_id, quantity in merged:
        if quantity > MAX_QUANTITY:
            raise HTTPError(
                400,
                f"product {product_id} is ordered more than {MAX_QUANTITY} times",
            )
    return merged


def merge_lines(lines: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sum quantities per product (cart rows may repeat one), in product id order."""
    merged: dict[int, int] = {}
    for product_id, quantity in lines:
        merged[product_id] = merged.get(product_id, 0) + quantity
    return sorted(merged.items())


def cpu_work(n: int) -> str:
    """Pure-Python arithmetic proportional to ``n``.

    It holds the GIL the whole time, so extra threads in one worker do not help and
    only more processes (workers or replicas) raise throughput: that is the property
    the scaling benchmarks measure.
    """
    mask = (1 << 64) - 1
    x = 0x9E3779B97F4A7C15
    acc = 0
    for i in range(n):
        x = (x * 6364136223846793005 + 1442695040888963407) & mask
        acc = ((acc ^ (x >> 29)) + i) & mask
    return f"{acc:016x}"


class Request:
    def __init__(self, environ: Mapping[str, Any], params: dict[str, str]) -> None:
        self.environ = environ
        self.params = params
        self.method = str(environ.get("REQUEST_METHOD", "GET")).upper()

    @cached_property
    def query(self) -> dict[str, str]:
        return parse_query_string(self.environ.get("QUERY_STRING", ""))

    @cached_property
    def body(self) -> dict:
        return read_json_body(self.environ)


# --------------------------------------------------------------------------------------
# SQL. Every value travels as a parameter.

SQL_LIST_USERS = """
    SELECT id, email, name, created_at, last_login
    FROM users
    ORDER BY id
    LIMIT %s
"""

SQL_LIST_PRODUCTS = """
    SELECT id, sku, name, price, stock, created_at
    FROM products
    ORDER BY id
    LIMIT %s
"""

SQL_GET_PRODUCT = """
    SELECT id, sku, name, price, stock, created_at
    FROM products
    WHERE id = %s
"""

SQL_USER_EXISTS = "SELECT 1 FROM users WHERE id = %s"

SQL_ADD_TO_CART = """
    INSERT INTO carts (user_id, product_id, quantity)
    SELECT u.id, p.id, %(quantity)s
    FROM users AS u, products AS p
    WHERE u.id = %(user_id)s AND p.id = %(product_id)s
    RETURNING id, user_id, product_id, quantity, added_at
"""

SQL_TAKE_CART = """
    DELETE FROM carts
    WHERE user_id = %s
    RETURNING product_id, quantity
"""

# A uniformly drawn id between the smallest and largest product id, then the first
# product at or above it: two primary-key lookups instead of sorting the whole table
# by random(). Gaps in the ids skew the draw slightly, which a load test won't notice.
SQL_RANDOM_PRODUCT = """
    SELECT id
    FROM products
    WHERE id >= (
        SELECT min(id) + floor(random() * (max(id) - min(id) + 1))::bigint
        FROM products
    )
    ORDER BY id
    LIMIT 1
"""

SQL_PRODUCT_PRICES = "SELECT id, price FROM products WHERE id = ANY(%s)"

SQL_INSERT_ORDER = """
    INSERT INTO orders (user_id, status, total)
    VALUES (%s, 'pending', %s)
    RETURNING id, user_id, status, total, created_at
"""

SQL_INSERT_ORDER_ITEMS = """
    INSERT INTO order_items (order_id, product_id, quantity, price)
    SELECT %s, line.product_id, line.quantity, line.price
    FROM unnest(%s::bigint[], %s::integer[], %s::numeric[])
        AS line (product_id, quantity, price)
"""

SQL_LOCK_ORDER = """
    SELECT id, status, total
    FROM orders
    WHERE id = %s
    FOR UPDATE
"""

SQL_INSERT_PAYMENT = """
    INSERT INTO payments (order_id, amount, status)
    VALUES (%s, %s, 'captured')
    RETURNING id, order_id, amount, status, created_at
"""

SQL_MARK_ORDER_PAID = "UPDATE orders SET status = 'paid' WHERE id = %s"

# orders.user_id deliberately has no index (see schema.sql): this is the query the
# performance tooling is expected to flag.
SQL_ORDERS_FOR_USER = """
    SELECT id, user_id, status, total, created_at
    FROM orders
    WHERE orders.user_id = %s
    ORDER BY created_at DESC, id DESC
    LIMIT %s
"""


# --------------------------------------------------------------------------------------
# The application


class Application:
    """The WSGI callable. One instance per worker process."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._pool: psycopg_pool.ConnectionPool | None = None
        self._pool_pid: int | None = None
        self._redis: redis.Redis | None = None
        self._redis_pid: int | None = None
        self._held: list[bytearray] = []
        self._last_warning: dict[str, float] = {}
        self.router = self._build_router()

    # -- routing --------------------------------------------------------------------

    def _build_router(self) -> Router:
        router = Router()
        router.add("GET", "/api/health", self.health)
        router.add("GET", "/api/users", self.list_users)
        router.add("GET", "/api/products", self.list_products)
        router.add("GET", "/api/products/{id}", self.get_product)
        router.add("POST", "/api/cart", self.add_to_cart)
        router.add("POST", "/api/checkout", self.checkout)
        router.add("POST", "/api/payment", self.pay)
        router.add("GET", "/api/orders", self.list_orders)
        router.add("POST", "/api/orders", self.create_order)
        router.add("GET", "/api/cpu", self.cpu)
        router.add("GET", "/api/delay", self.delay)
        if self.config.debug:
            # Registered only in debug mode so that, otherwise, the path is
            # indistinguishable from any unknown one.
            router.add("POST", "/api/debug/allocate", self.debug_allocate)
            router.add("DELETE", "/api/debug/allocate", self.debug_release)
        return router

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> list[bytes]:
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        path = environ.get("PATH_INFO") or "/"
        try:
            handler, params = self.router.resolve(method, path)
            response = handler(Request(environ, params))
        except HTTPError as exc:
            response = exc.response()
        except psycopg_pool.PoolTimeout:
            self._warn_throttled("pool", "no database connection became available")
            response = json_response(503, {"error": "database unavailable"})
        except psycopg.OperationalError as exc:
            self._warn_throttled("db", f"database error: {exc}")
            response = json_response(503, {"error": "database unavailable"})
        except psycopg.IntegrityError as exc:
            # Validation checks existence first, so this means a concurrent change
            # (say, a product deleted mid-request): the client may simply retry.
            log.warning("integrity error in %s %s: %s", method, path, exc)
            response = json_response(
                409, {"error": "conflicting concurrent change, please retry"}
            )
        except Exception:
            log.exception("unhandled error in %s %s", method, path)
            response = json_response(500, {"error": "internal server error"})

        headers = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(response.body))),
            ("Cache-Control", "no-store"),
            *response.headers,
            ("X-Replica", self.config.replica),
        ]
        start_response(status_line(response.status), headers)
        if method == "HEAD":
            return []
        return [response.body]

    # -- resources, opened lazily in each worker process ----------------------------
    #
    # gunicorn forks its workers; sockets and pool threads must not be shared across
    # a fork, so each process builds its own on first use and the pid check rebuilds
    # them if the app object was created before forking (preload_app).

    def db(self) -> psycopg_pool.ConnectionPool:
        pid = os.getpid()
        if self._pool_pid != pid:
            with self._lock:
                if self._pool_pid != pid:
                    self._pool = self._open_pool()
                    atexit.register(self._close_pool, self._pool, pid)
                    self._pool_pid = pid
        assert self._pool is not None
        return self._pool

    def _open_pool(self) -> psycopg_pool.ConnectionPool:
        size = self.config.db_pool_size
        pool = psycopg_pool.ConnectionPool(
            self.config.database_url,
            min_size=size,
            max_size=size,
            open=False,
            name=f"nself-api-{self.config.replica}",
            timeout=self.config.db_pool_timeout,
            # Each request is one short unit of work: plain reads run in autocommit,
            # writes open an explicit transaction.
            kwargs={
                "autocommit": True,
                "row_factory": dict_row,
                "prepare_threshold": self.config.prepare_threshold,
                "application_name": f"nself-api/{self.config.replica}",
            },
            # One empty round trip each time a connection leaves the pool. It is what
            # makes the first requests after a PostgreSQL restart succeed instead of
            # failing on dead sockets, and this toolkit restarts PostgreSQL on purpose.
            check=psycopg_pool.ConnectionPool.check_connection,
        )
        pool.open(wait=False)
        log.info("database pool opened in pid %d (size %d)", os.getpid(), size)
        return pool

    @staticmethod
    def _close_pool(pool: psycopg_pool.ConnectionPool, pid: int) -> None:
        if os.getpid() == pid:
            pool.close(timeout=5)

    def cache(self) -> redis.Redis:
        pid = os.getpid()
        if self._redis_pid != pid:
            with self._lock:
                if self._redis_pid != pid:
                    self._redis = redis.Redis.from_url(
                        self.config.redis_url,
                        # The cache must never make a request much slower than no
                        # cache: short timeouts and a single retry.
                        socket_timeout=1.0,
                        socket_connect_timeout=1.0,
                        retry=redis.retry.Retry(redis.backoff.NoBackoff(), 1),
                        health_check_interval=30,
                        client_name=f"nself-api-{self.config.replica}",
                    )
                    self._redis_pid = pid
        assert self._redis is not None
        return self._redis

    def _warn_throttled(self, key: str, message: str, interval: float = 30.0) -> None:
        # When a dependency is down every request fails the same way; one line per
        # interval is enough and keeps the log readable under load.
        now = time.monotonic()
        last = self._last_warning.get(key)
        if last is None or now - last >= interval:
            self._last_warning[key] = now
            log.warning("%s", message)

    # -- endpoints ------------------------------------------------------------------

    def health(self, request: Request) -> Response:
        errors: dict[str, str] = {}
        try:
            with self.db().connection(timeout=2.0) as conn:
                row = conn.execute("SELECT 1 AS ok").fetchone()
            if not row or row["ok"] != 1:
                errors["postgres"] = "unexpected answer to SELECT 1"
        except (psycopg.Error, OSError) as exc:
            self._warn_throttled("health-pg", f"health: postgres check failed: {exc}")
            errors["postgres"] = type(exc).__name__
        try:
            if not self.cache().ping():
                errors["redis"] = "PING did not return PONG"
        except (redis.RedisError, OSError) as exc:
            self._warn_throttled("health-redis", f"health: redis check failed: {exc}")
            errors["redis"] = type(exc).__name__
        payload: dict[str, Any] = {
            "status": "ok" if not errors else "unavailable",
            "replica": self.config.replica,
            "postgres": "postgres" not in errors,
            "redis": "redis" not in errors,
        }
        if errors:
            payload["failing"] = sorted(errors)
            payload["errors"] = errors
            return json_response(503, payload)
        return json_response(200, payload)

    def list_users(self, request: Request) -> Response:
        limit = query_int(
            request.query,
            "limit",
            default=USERS_LIMIT_DEFAULT,
            minimum=1,
            maximum=LIST_LIMIT_MAX,
            clamp=True,
        )
        with self.db().connection() as conn:
            rows = conn.execute(SQL_LIST_USERS, (limit,)).fetchall()
        return json_response(200, {"users": rows, "count": len(rows)})

    def list_products(self, request: Request) -> Response:
        limit = query_int(
            request.query,
            "limit",
            default=PRODUCTS_LIMIT_DEFAULT,
            minimum=1,
            maximum=LIST_LIMIT_MAX,
            clamp=True,
        )
        ttl = self.config.products_cache_ttl
        key = f"{CACHE_PREFIX}products:limit={limit}"
        if ttl:
            try:
                cached = self.cache().get(key)
            except redis.RedisError as exc:
                self._warn_throttled("redis-get", f"product cache read failed: {exc}")
                cached = None
            if cached is not None:
                return Response(200, cached, [("X-Cache", "hit")])
        with self.db().connection() as conn:
            rows = conn.execute(SQL_LIST_PRODUCTS, (limit,)).fetchall()
        body = encode_json({"products": rows, "count": len(rows)})
        if ttl:
            try:
                self.cache().set(key, body, ex=ttl)
            except redis.RedisError as exc:
                self._warn_throttled("redis-set", f"product cache write failed: {exc}")
        return Response(200, body, [("X-Cache", "miss")])

    def get_product(self, request: Request) -> Response:
        product_id = path_id(request.params, "id", "product")
        with self.db().connection() as conn:
            row = conn.execute(SQL_GET_PRODUCT, (product_id,)).fetchone()
        if row is None:
            raise HTTPError(404, f"product {product_id} not found")
        return json_response(200, row)

    def add_to_cart(self, request: Request) -> Response:
        body = request.body
        params = {
            "user_id": body_int(body, "user_id"),
            "product_id": body_int(body, "product_id"),
            "quantity": body_int(body, "quantity", maximum=MAX_QUANTITY),
        }
        with self.db().connection() as conn:
            row = conn.execute(SQL_ADD_TO_CART, params).fetchone()
            if row is None:
                # Nothing inserted: find out which of the two does not exist.
                if conn.execute(SQL_USER_EXISTS, (params["user_id"],)).fetchone():
                    raise HTTPError(404, f"product {params['product_id']} not found")
                raise HTTPError(404, f"user {params['user_id']} not found")
        return json_response(201, row)

    def _create_order(
        self, conn: psycopg.Connection, user_id: int, lines: list[tuple[int, int]]
    ) -> dict[str, Any]:
        """Insert an order and its items; call inside a transaction.

        Prices are copied from products at this moment, as a shop would. Stock is
        informational only: reserving it would make long load tests run out of
        products and fail for reasons unrelated to what they measure.
        """
        product_ids = [product_id for product_id, _ in lines]
        prices = {
            row["id"]: row["price"]
            for row in conn.execute(SQL_PRODUCT_PRICES, (product_ids,)).fetchall()
        }
        missing = [pid for pid in product_ids if pid not in prices]
        if missing:
            raise HTTPError(
                404,
                "product(s) not found: " + ", ".join(str(pid) for pid in missing),
                missing_product_ids=missing,
            )
        total = sum((prices[pid] * qty for pid, qty in lines), Decimal("0.00"))
        order = conn.execute(SQL_INSERT_ORDER, (user_id, total)).fetchone()
        assert order is not None
        conn.execute(
            SQL_INSERT_ORDER_ITEMS,
            (
                order["id"],
                product_ids,
                [qty for _, qty in lines],
                [prices[pid] for pid in product_ids],
            ),
        )
        return {
            "order_id": order["id"],
            "user_id": order["user_id"],
            "status": order["status"],
            "total": order["total"],
            "created_at": order["created_at"],
            "items": [
                {"product_id": pid, "quantity": qty, "price": prices[pid]}
                for pid, qty in lines
            ],
        }

    def checkout(self, request: Request) -> Response:
        """Turn the user's cart into one order.

        If the cart is empty the order gets one unit of a random product instead of
        failing: load tests can then hammer checkout without first filling a cart for
        every virtual user. ``from_cart`` in the answer tells the two cases apart.
        """
        user_id = body_int(request.body, "user_id")
        with self.db().connection() as conn, conn.transaction():
            if conn.execute(SQL_USER_EXISTS, (user_id,)).fetchone() is None:
                raise HTTPError(404, f"user {user_id} not found")
            # DELETE … RETURNING claims the rows: a concurrent checkout of the same
            # cart waits on the row locks and then finds nothing left to take.
            taken = conn.execute(SQL_TAKE_CART, (user_id,)).fetchall()
            from_cart = bool(taken)
            if from_cart:
                lines = merge_lines([(r["product_id"], r["quantity"]) for r in taken])
            else:
                row = conn.execute(SQL_RANDOM_PRODUCT).fetchone()
                if row is None:
                    raise HTTPError(409, "there are no products to order")
                lines = [(row["id"], 1)]
            result = self._create_order(conn, user_id, lines)
        result["from_cart"] = from_cart
        return json_response(201, result)

    def create_order(self, request: Request) -> Response:
        body = request.body
        user_id = body_int(body, "user_id")
        lines = body_order_lines(body)
        with self.db().connection() as conn, conn.transaction():
            if conn.execute(SQL_USER_EXISTS, (user_id,)).fetchone() is None:
                raise HTTPError(404, f"user {user_id} not found")
            result = self._create_order(conn, user_id, lines)
        return json_response(201, result)

    def pay(self, request: Request) -> Response:
        """Record a payment for the full order total and mark the order paid.

        The amount must equal the order's total (the checkout and order answers carry
        it); a paid or cancelled order cannot be paid again.
        """
        body = request.body
        order_id = body_int(body, "order_id")
        amount = body_amount(body, "amount")
        with self.db().connection() as conn, conn.transaction():
            order = conn.execute(SQL_LOCK_ORDER, (order_id,)).fetchone()
            if order is None:
                raise HTTPError(404, f"order {order_id} not found")
            if order["status"] in ("paid", "shipped"):
                raise HTTPError(409, f"order {order_id} is already paid")
            if order["status"] != "pending":
                raise HTTPError(409, f"order {order_id} is {order['status']}")
            if amount != order["total"]:
                raise HTTPError(
                    422,
                    f"amount {amount} does not match the order total {order['total']}",
                    order_total=order["total"],
                )
            payment = conn.execute(SQL_INSERT_PAYMENT, (order_id, amount)).fetchone()
            conn.execute(SQL_MARK_ORDER_PAID, (order_id,))
        assert payment is not None
        return json_response(
            201,
            {
                "payment_id": payment["id"],
                "order_id": payment["order_id"],
                "amount": payment["amount"],
                "status": payment["status"],
                "order_status": "paid",
                "created_at": payment["created_at"],
            },
        )

    def list_orders(self, request: Request) -> Response:
        query = request.query
        user_id = query_int(query, "user_id", minimum=1, maximum=MAX_ID)
        limit = query_int(
            query,
            "limit",
            default=ORDERS_LIMIT_DEFAULT,
            minimum=1,
            maximum=LIST_LIMIT_MAX,
            clamp=True,
        )
        with self.db().connection() as conn:
            rows = conn.execute(SQL_ORDERS_FOR_USER, (user_id, limit)).fetchall()
        return json_response(
            200, {"user_id": user_id, "orders": rows, "count": len(rows)}
        )

    def cpu(self, request: Request) -> Response:
        n = query_int(
            request.query,
            "n",
            default=CPU_DEFAULT_N,
            minimum=1,
            maximum=CPU_MAX_N,
            clamp=True,
        )
        started = time.perf_counter()
        result = cpu_work(n)
        elapsed_ms = (time.perf_counter() - started) * 1000
        return json_response(
            200,
            {
                "n": n,
                "result": result,
                "elapsed_ms": round(elapsed_ms, 3),
                "replica": self.config.replica,
                "pid": os.getpid(),
            },
        )

    def delay(self, request: Request) -> Response:
        ms = query_int(
            request.query, "ms", default=100, minimum=0, maximum=DELAY_MAX_MS
        )
        started = time.perf_counter()
        time.sleep(ms / 1000)
        elapsed_ms = (time.perf_counter() - started) * 1000
        return json_response(
            200,
            {
                "requested_ms": ms,
                "elapsed_ms": round(elapsed_ms, 3),
                "replica": self.config.replica,
            },
        )

    def debug_allocate(self, request: Request) -> Response:
        """Allocate and keep ``mb`` MiB so tests can watch a memory limit bite.

        Every page is written, so the memory is resident rather than merely reserved;
        under a cgroup limit the kernel kills the worker, under an address-space limit
        the allocation fails and this answers 503.
        """
        mb = query_int(request.query, "mb", minimum=1, maximum=DEBUG_ALLOCATE_MAX_MB)
        size = mb * MIB
        try:
            block = bytearray(size)
            block[:: mmap.PAGESIZE] = b"\x01" * len(range(0, size, mmap.PAGESIZE))
        except MemoryError:
            raise HTTPError(503, f"could not allocate {mb} MiB") from None
        with self._lock:
            self._held.append(block)
            held = sum(len(b) for b in self._held) // MIB
        log.warning("debug: holding %d MiB in pid %d", held, os.getpid())
        return json_response(
            200,
            {
                "allocated_mb": mb,
                "held_mb": held,
                "pid": os.getpid(),
                "replica": self.config.replica,
            },
        )

    def debug_release(self, request: Request) -> Response:
        with self._lock:
            released = sum(len(b) for b in self._held) // MIB
            self._held.clear()
        return json_response(
            200,
            {"released_mb": released, "held_mb": 0, "pid": os.getpid()},
        )


def configure_logging() -> None:
    # gunicorn configures only its own loggers; give ours a stderr handler in the
    # same shape so both interleave readably in one log. The connection pool reports
    # its reconnection attempts on its own logger; route those through the same
    # handler, or Python would print them bare, without time or pid.
    if log.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(
            "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s",
            "%Y-%m-%d %H:%M:%S %z",
        )
    )
    log.addHandler(handler)
    log.propagate = False
    pool_log = logging.getLogger("psycopg.pool")
    if not pool_log.handlers:
        pool_log.addHandler(handler)
        pool_log.setLevel(logging.WARNING)
        pool_log.propagate = False


def create_app(environ: Mapping[str, str] | None = None) -> Application:
    configure_logging()
    config = load_config(os.environ if environ is None else environ)
    log.setLevel(config.log_level)
    log.info(
        "nself sample API configured: replica=%s pool_size=%d debug=%s",
        config.replica,
        config.db_pool_size,
        config.debug,
    )
    return Application(config)


# Holds the one Application of this process once gunicorn has asked for it.
_state: dict[str, Application] = {}
_state_lock = threading.Lock()


def __getattr__(name: str) -> Any:
    # gunicorn resolves "nself_sample_api.app:application" with getattr(), which
    # lands here: the configuration is read from the environment at that moment,
    # once per process, and a ConfigError stops the worker from booting.
    if name == "application":
        with _state_lock:
            if "application" not in _state:
                _state["application"] = create_app()
        return _state["application"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
