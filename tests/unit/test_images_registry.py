"""The Registry HTTP API v2 client against a scripted HTTP server (real sockets, real headers)."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pipeline_tools.images.registry import MANIFEST_TYPES, Credentials, Registry, RegistryError, ecr_parts, is_local

DIGEST = "sha256:" + "ab" * 32


class Fake:
    """Scripted registry: `manifests[(repo, ref)] = (content_type, body)`; records requests."""

    def __init__(self):
        self.manifests: dict[tuple[str, str], tuple[str, bytes]] = {}
        self.requests: list[tuple[str, str, dict]] = []
        self.require_basic: str | None = None
        self.bearer: str | None = None
        self.omit_digest_on_head = False
        fake = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _auth_ok(self) -> bool:
                got = self.headers.get("Authorization", "")
                if fake.bearer and got != f"Bearer {fake.bearer}":
                    realm = f"http://127.0.0.1:{fake.port}/token"
                    self._send(401, {"WWW-Authenticate": f'Bearer realm="{realm}",service="reg",scope="x"'})
                    return False
                if fake.require_basic and got != f"Basic {fake.require_basic}":
                    self._send(401, {"WWW-Authenticate": 'Basic realm="reg"'})
                    return False
                return True

            def _send(self, code, headers=None, body=b""):
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _route(self):
                fake.requests.append((self.command, self.path, dict(self.headers)))
                if self.path.startswith("/token"):
                    return self._send(200, {"Content-Type": "application/json"},
                                      json.dumps({"token": fake.bearer}).encode())
                if not self._auth_ok():
                    return None
                parts = self.path.split("/manifests/")
                repo, ref = parts[0][len("/v2/"):], parts[1]
                if self.command == "PUT":
                    body = self.rfile.read(int(self.headers["Content-Length"]))
                    fake.manifests[(repo, ref)] = (self.headers["Content-Type"], body)
                    return self._send(201, {"Docker-Content-Digest": DIGEST})
                if (repo, ref) not in fake.manifests:
                    return self._send(404)
                ctype, body = fake.manifests[(repo, ref)]
                headers = {"Content-Type": ctype}
                if not (fake.omit_digest_on_head and self.command == "HEAD"):
                    headers["Docker-Content-Digest"] = DIGEST
                return self._send(200, headers, body)

            do_HEAD = do_GET = do_PUT = _route

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake():
    f = Fake()
    yield f
    f.close()


MANIFEST = (b'{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",'
            b'"config":{},"layers":[]}')
V2 = "application/vnd.docker.distribution.manifest.v2+json"


def test_head_existing_tag_returns_digest_in_one_round_trip(fake):
    fake.manifests[("iris-model", "pt-1")] = (V2, MANIFEST)
    reg = Registry(fake.host)
    assert reg.manifest_digest("iris-model", "pt-1") == DIGEST
    assert [(m, p) for m, p, _ in fake.requests] == [("HEAD", "/v2/iris-model/manifests/pt-1")]
    accept = fake.requests[0][2]["Accept"]
    for media in ("manifest.v2+json", "manifest.list.v2+json", "oci.image.manifest.v1+json", "oci.image.index.v1+json"):
        assert media in accept
    assert accept == MANIFEST_TYPES


def test_missing_tag_is_none(fake):
    assert Registry(fake.host).manifest_digest("iris-model", "pt-2") is None


def test_digest_computed_when_head_omits_it(fake):
    fake.manifests[("r", "t")] = (V2, MANIFEST)
    fake.omit_digest_on_head = True
    assert Registry(fake.host).manifest_digest("r", "t") == DIGEST  # from the GET's header


def test_basic_auth_is_sent_and_failure_is_clear(fake):
    fake.manifests[("r", "t")] = (V2, MANIFEST)
    fake.require_basic = base64.b64encode(b"AWS:secret-password").decode()
    assert Registry(fake.host, Credentials("AWS", "secret-password")).manifest_digest("r", "t") == DIGEST
    with pytest.raises(RegistryError, match=r"authentication failed for repository r \(HTTP 401\)"):
        Registry(fake.host, Credentials("AWS", "wrong")).manifest_digest("r", "t")


def test_bearer_token_challenge(fake):
    fake.manifests[("r", "t")] = (V2, MANIFEST)
    fake.bearer = "tok-123456789"
    reg = Registry(fake.host)
    assert reg.manifest_digest("r", "t") == DIGEST
    assert [m for m, _, _ in fake.requests] == ["HEAD", "GET", "HEAD"]  # challenge, token, retry
    assert reg.manifest_digest("r", "t") == DIGEST  # token reused: one more request only
    assert len(fake.requests) == 4


def test_unreachable_registry_is_one_clear_error():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RegistryError, match=rf"cannot reach registry http://127.0.0.1:{port}"):
        Registry(f"127.0.0.1:{port}", timeout=2).manifest_digest("r", "t")


def test_retag_copies_the_manifest(fake):
    fake.manifests[("r", "pt-1")] = (V2, MANIFEST)
    reg = Registry(fake.host)
    reg.retag("r", "pt-1", "abc123")
    assert fake.manifests[("r", "abc123")] == (V2, MANIFEST)
    put = next(h for m, _, h in fake.requests if m == "PUT")
    assert put["Content-Type"] == V2


def test_host_classification():
    assert is_local("127.0.0.1:5055") and is_local("localhost:5000") and is_local("localhost")
    assert not is_local("123456789012.dkr.ecr.us-east-1.amazonaws.com")
    assert ecr_parts("123456789012.dkr.ecr.eu-west-1.amazonaws.com") == ("123456789012", "eu-west-1")
    assert ecr_parts("127.0.0.1:5055") is None
    assert not Registry("123456789012.dkr.ecr.us-east-1.amazonaws.com").http


class _NoLocalImages:
    class ImageNotFound(Exception):
        pass

    class images:  # mimics docker.DockerClient.images
        @staticmethod
        def get(ref):
            raise _NoLocalImages.ImageNotFound(ref)


def test_base_image_resolved_from_its_registry(fake):
    from pipeline_tools.images.images import resolve_bases

    fake.manifests[("team/base", "3.11")] = (V2, MANIFEST)
    ref = f"{fake.host}/team/base:3.11"
    missing = f"{fake.host}/team/base:9.9"
    out = resolve_bases(_NoLocalImages, [ref, missing, "img@sha256:feed"])
    assert out == {ref: DIGEST, missing: "unresolved", "img@sha256:feed": "sha256:feed"}
    assert resolve_bases(_NoLocalImages, [ref], remote=False) == {ref: "unresolved"}
