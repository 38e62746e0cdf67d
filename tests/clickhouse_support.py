"""ClickHouse for the tests: chdb (an embedded ClickHouse, PyPI) holding the collector exporter's traces
table, and a small HTTP endpoint in front of it speaking as much of ClickHouse's HTTP interface as
clickhouse-connect uses (so ``--url http://...`` is exercised through the real client).

chdb runs one embedded server per process on one directory: every test of a session shares
:func:`chdb_dir`, each with tables of its own.

The HTTP interface, as ClickHouse documents it: the query in the ``query`` URL parameter or the
body, ``database`` the default database, ``param_NAME`` the values of ``{NAME:Type}`` placeholders,
the output format named by the query's ``FORMAT`` clause, the user and password in basic auth (or
``X-ClickHouse-User`` / ``X-ClickHouse-Key``); an error is a non-200 answer whose body is
``Code: N. DB::Exception: ...`` with ``X-ClickHouse-Exception-Code``. Other settings in the URL
(compression, session, progress headers) are accepted and ignored.
"""

from __future__ import annotations

import base64
import re
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tokentrail.ledger.clickhouse import chdb_session

_FORMAT = re.compile(r"\s+FORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)
_dir: Path | None = None


def chdb_dir(tmp_path_factory: Any) -> Path:
    """The session's chdb directory (created once)."""
    global _dir
    if _dir is None:
        _dir = tmp_path_factory.mktemp("chdb")
    return _dir


class ChdbHttpServer:
    """``http://127.0.0.1:PORT`` answering ClickHouse HTTP requests from the chdb session."""

    def __init__(self, directory: Path, *, user: str = "default", password: str = "") -> None:
        self.session = chdb_session(str(directory))
        self.user = user
        self.password = password
        self.queries: list[str] = []
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                owner._answer(self)

            def do_POST(self) -> None:
                owner._answer(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> ChdbHttpServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def _credentials(self, handler: BaseHTTPRequestHandler, params: dict[str, str]) -> tuple[str, str]:
        auth = handler.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            return user, password
        if "X-ClickHouse-User" in handler.headers:
            return handler.headers["X-ClickHouse-User"], handler.headers.get("X-ClickHouse-Key", "")
        return params.get("user", "default"), params.get("password", "")

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urllib.parse.urlsplit(handler.path)
        params = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length).decode() if length else ""
        if (handler.headers.get("Content-Encoding") or "identity") != "identity":
            return self._error(handler, 400, 0, "compressed request bodies are not served here")
        if self._credentials(handler, params) != (self.user, self.password):
            return self._error(handler, 403, 516, f"{self.user}: Authentication failed")
        sql = params.get("query", "")
        sql = f"{sql}\n{body}" if sql and body else (sql or body)
        found = _FORMAT.search(sql)
        fmt = found.group(1) if found else "TabSeparated"
        if found:
            sql = sql[: found.start()]
        values = {name[6:]: value for name, value in params.items() if name.startswith("param_")}
        database = params.get("database")
        with self.lock:
            self.queries.append(sql)
            try:
                if database:
                    self.session.query(f"USE `{database}`", "CSV")
                result = self.session.query(sql, fmt, params=values or None)
                data = result.bytes()
            except Exception as exc:
                text = str(exc)
                code = re.search(r"Code: (\d+)", text)
                return self._error(handler, 500, int(code.group(1)) if code else 1000, text)
        handler.send_response(200)
        handler.send_header("Content-Type", "application/octet-stream")
        handler.send_header("X-ClickHouse-Format", fmt)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _error(self, handler: BaseHTTPRequestHandler, status: int, code: int, message: str) -> None:
        text = message if message.startswith("Code:") else f"Code: {code}. DB::Exception: {message}"
        data = text.encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "text/plain; charset=UTF-8")
        handler.send_header("X-ClickHouse-Exception-Code", str(code))
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
