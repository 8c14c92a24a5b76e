"""A minimal S3 server written in Python, serving objects from a dict on loopback.

Its request handlers are Python threads: a framecache call that completes against it proves
the GIL was released while the call waited. ``hold()`` makes object reads wait at a gate
(``arrived`` is set when one does), for interrupt and cancellation tests.
"""

from __future__ import annotations

import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape


class FakeS3:
    def __init__(self, bucket: str = "mpr"):
        self.bucket = bucket
        self.objects: dict[str, bytes] = {}
        self.requests = 0
        # Each request's headers, names in lower case.
        self.headers: list[dict[str, str]] = []
        self.held = False
        self.arrived = threading.Event()
        self.release = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, status: int, body: bytes = b"", content_type: str = "application/xml"):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _key(self) -> tuple[str, dict[str, str]]:
                url = urllib.parse.urlsplit(self.path)
                path = urllib.parse.unquote(url.path).lstrip("/")
                query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
                _bucket, _, key = path.partition("/")
                return key, query

            def do_GET(self):
                owner.requests += 1
                owner.headers.append({k.lower(): v for k, v in self.headers.items()})
                key, query = self._key()
                if not key:
                    prefix = query.get("prefix", "")
                    keys = sorted(k for k in owner.objects if k.startswith(prefix))
                    contents = "".join(
                        f"<Contents><Key>{escape(k)}</Key><Size>{len(owner.objects[k])}</Size>"
                        "<LastModified>2026-01-01T00:00:00.000Z</LastModified>"
                        '<ETag>"0"</ETag></Contents>'
                        for k in keys
                    )
                    body = (
                        '<?xml version="1.0" encoding="UTF-8"?>'
                        '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                        f"<Name>{owner.bucket}</Name><Prefix>{escape(prefix)}</Prefix>"
                        f"<KeyCount>{len(keys)}</KeyCount><MaxKeys>1000</MaxKeys>"
                        f"<IsTruncated>false</IsTruncated>{contents}</ListBucketResult>"
                    )
                    return self._send(200, body.encode())
                if owner.held:
                    owner.arrived.set()
                    owner.release.wait()
                return self._object(key)

            def do_HEAD(self):
                owner.requests += 1
                owner.headers.append({k.lower(): v for k, v in self.headers.items()})
                key, _ = self._key()
                return self._object(key)

            def _object(self, key: str):
                data = owner.objects.get(key)
                if data is None:
                    body = (
                        '<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code>'
                        f"<Message>no such key</Message><Key>{escape(key)}</Key></Error>"
                    )
                    return self._send(404, body.encode())
                return self._send(200, data, "application/octet-stream")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeS3:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def hold(self) -> None:
        """Object reads wait from now on until ``release`` is set."""
        self.held = True

    def cache_kwargs(self, tmp: str, **overrides) -> dict:
        kwargs = dict(
            backend="s3",
            bucket=self.bucket,
            endpoint=self.endpoint,
            region="us-east-1",
            access_key_id="GKfake",
            secret_access_key="fake-secret",
            cache_dir=f"{tmp}/disk-fake",
            retries=0,
            origin_timeout=60.0,
        )
        kwargs.update(overrides)
        return kwargs
