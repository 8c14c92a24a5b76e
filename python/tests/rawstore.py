"""Raw object access for the tests, independent of framecache: files under the fs backend's
root, or S3 requests signed with AWS Signature Version 4 (standard library only), path-style
as the Python module's client addresses the bucket."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import os
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET


class RawStore:
    def put(self, key: str, data: bytes) -> None:
        raise NotImplementedError

    def get(self, key: str) -> bytes | None:
        raise NotImplementedError

    def list(self, prefix: str) -> list[str]:
        """Keys under ``prefix``, sorted."""
        raise NotImplementedError

    def delete(self, key: str) -> None:
        raise NotImplementedError


class FsStore(RawStore):
    def __init__(self, root: str):
        self.root = root

    def _path(self, key: str) -> str:
        return os.path.join(self.root, *key.split("/"))

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)

    def get(self, key: str) -> bytes | None:
        try:
            with open(self._path(key), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def list(self, prefix: str) -> list[str]:
        keys = []
        for dirpath, _dirs, files in os.walk(self.root):
            rel = os.path.relpath(dirpath, self.root)
            for name in files:
                key = name if rel == "." else f"{rel.replace(os.sep, '/')}/{name}"
                if key.startswith(prefix) and not key.startswith(".framecache-tmp"):
                    keys.append(key)
        return sorted(keys)

    def delete(self, key: str) -> None:
        try:
            os.unlink(self._path(key))
        except FileNotFoundError:
            pass


def _quote(text: str, safe: str = "-_.~") -> str:
    return urllib.parse.quote(text, safe=safe)


class S3Store(RawStore):
    def __init__(self, endpoint: str, bucket: str, region: str, key_id: str, secret: str):
        self.endpoint = endpoint.rstrip("/")
        self.bucket = bucket
        self.region = region
        self.key_id = key_id
        self.secret = secret

    @classmethod
    def from_env(cls) -> S3Store:
        return cls(
            os.environ["AWS_ENDPOINT_URL"],
            os.environ.get("S3_BUCKET", "mpr"),
            os.environ.get("AWS_REGION", "us-east-1"),
            os.environ["AWS_ACCESS_KEY_ID"],
            os.environ["AWS_SECRET_ACCESS_KEY"],
        )

    def _request(
        self, method: str, key: str = "", query: dict[str, str] | None = None, body: bytes = b""
    ) -> tuple[int, bytes]:
        query = query or {}
        path = f"/{self.bucket}" + (f"/{_quote(key, safe='-_.~/')}" if key else "")
        host = urllib.parse.urlsplit(self.endpoint).netloc
        now = datetime.datetime.now(datetime.timezone.utc)
        amz_date = now.strftime("%Y%m%dT%H%M%SZ")
        day = now.strftime("%Y%m%d")
        payload_hash = hashlib.sha256(body).hexdigest()
        canonical_query = "&".join(
            f"{_quote(k)}={_quote(v)}" for k, v in sorted(query.items())
        )
        headers = {"host": host, "x-amz-content-sha256": payload_hash, "x-amz-date": amz_date}
        signed = ";".join(sorted(headers))
        canonical = "\n".join(
            [
                method,
                path,
                canonical_query,
                "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)),
                signed,
                payload_hash,
            ]
        )
        scope = f"{day}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(
            ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        signing = ("AWS4" + self.secret).encode()
        for part in (day, self.region, "s3", "aws4_request"):
            signing = hmac.new(signing, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(signing, to_sign.encode(), hashlib.sha256).hexdigest()
        request = urllib.request.Request(
            self.endpoint + path + (f"?{canonical_query}" if canonical_query else ""),
            data=body if method == "PUT" else None,
            method=method,
        )
        for name, value in headers.items():
            if name != "host":
                request.add_header(name, value)
        request.add_header(
            "Authorization",
            f"AWS4-HMAC-SHA256 Credential={self.key_id}/{scope}, "
            f"SignedHeaders={signed}, Signature={signature}",
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def put(self, key: str, data: bytes) -> None:
        status, body = self._request("PUT", key, body=data)
        assert status == 200, (status, body)

    def get(self, key: str) -> bytes | None:
        status, body = self._request("GET", key)
        if status == 404:
            return None
        assert status == 200, (status, body)
        return body

    def list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        token = None
        while True:
            query = {"list-type": "2", "prefix": prefix}
            if token:
                query["continuation-token"] = token
            status, body = self._request("GET", query=query)
            assert status == 200, (status, body)
            root = ET.fromstring(body)
            ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
            keys += [c.findtext(f"{ns}Key") or "" for c in root.findall(f"{ns}Contents")]
            if root.findtext(f"{ns}IsTruncated") != "true":
                return sorted(keys)
            token = root.findtext(f"{ns}NextContinuationToken")

    def delete(self, key: str) -> None:
        status, body = self._request("DELETE", key)
        assert status in (200, 204), (status, body)
