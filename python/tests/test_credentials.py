"""S3 settings and sign-in from the environment, as the ``framecache`` command reads them:
the same variables with the same precedence, keywords over them, session tokens sent."""

from __future__ import annotations

import pytest

import framecache
from fakes3 import FakeS3

# Variables that would otherwise leak in from the machine or the Garage run.
CLEARED = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "S3_ENDPOINT_URL",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "FRAMECACHE_S3_ANONYMOUS",
    "FRAMECACHE_S3_ADDRESSING",
    "S3_BUCKET",
)


@pytest.fixture
def s3_env(monkeypatch, tmp_path):
    for name in CLEARED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("FRAMECACHE_BACKEND", "s3")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with FakeS3() as server:
        monkeypatch.setenv("S3_ENDPOINT_URL", server.endpoint)
        yield server, monkeypatch, tmp_path


def test_seed_variables_and_session_token_reach_the_wire(s3_env):
    server, env, tmp = s3_env
    env.setenv("AWS_DEFAULT_REGION", "eu-north-1")
    env.setenv("AWS_ACCESS_KEY_ID", "AKIAPYTHONTEST000001")
    env.setenv("AWS_SECRET_ACCESS_KEY", "python-secret")
    env.setenv("AWS_SESSION_TOKEN", "python-session-token")
    fc = framecache.FrameCache(cache_dir=str(tmp / "disk"))
    assert server.endpoint in fc.origin
    assert not fc.exists("no-such-timeline")
    assert server.headers, "the fake S3 was not asked"
    for headers in server.headers:
        auth = headers["authorization"]
        assert "Credential=AKIAPYTHONTEST000001/" in auth
        assert "/eu-north-1/s3/aws4_request" in auth
        assert headers["x-amz-security-token"] == "python-session-token"


def test_keywords_override_the_environment(s3_env):
    server, env, tmp = s3_env
    env.setenv("AWS_REGION", "eu-north-1")
    env.setenv("AWS_SESSION_TOKEN", "token-of-other-keys")
    fc = framecache.FrameCache(
        cache_dir=str(tmp / "disk"),
        region="us-west-2",
        access_key_id="AKIAKEYWORD000000001",
        secret_access_key="keyword-secret",
    )
    assert not fc.exists("no-such-timeline")
    for headers in server.headers:
        assert "/us-west-2/s3/aws4_request" in headers["authorization"]
        assert "AKIAKEYWORD000000001/" in headers["authorization"]
        # Keys given as keywords never borrow the environment's token.
        assert "x-amz-security-token" not in headers


def test_anonymous_sends_unsigned_requests(s3_env):
    server, env, tmp = s3_env
    fc = framecache.FrameCache(cache_dir=str(tmp / "disk"), anonymous=True)
    assert not fc.exists("no-such-timeline")
    assert server.headers
    assert all("authorization" not in h for h in server.headers)


def test_no_credentials_names_the_sources_and_the_fix(s3_env):
    server, _env, tmp = s3_env
    fc = framecache.FrameCache(cache_dir=str(tmp / "disk"))
    with pytest.raises(framecache.FrameCacheError) as caught:
        fc.exists("no-such-timeline")
    message = str(caught.value)
    assert "no S3 credentials found" in message
    assert message.index("web identity") < message.index("ECS container credentials")
    assert "FRAMECACHE_S3_ANONYMOUS" in message
    assert server.requests == 0


def test_bad_addressing_keyword_is_refused(s3_env):
    _server, _env, tmp = s3_env
    with pytest.raises(framecache.InvalidInputError, match="addressing"):
        framecache.FrameCache(cache_dir=str(tmp / "disk"), addressing="sideways")
