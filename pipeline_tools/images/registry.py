"""Does a tag exist, its digest, retagging: `EcrRegistry` through the ECR API for ECR hosts,
`Registry` (a small Registry HTTP API v2 client) for every other registry.

`Registry` also works against ECR (basic auth from ecr:GetAuthorizationToken); registries on
localhost / 127.0.0.1 are spoken to over plain http (as docker does).
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import ssl
import urllib.parse
import urllib.request
from dataclasses import dataclass

from pipeline_tools.core.errors import NotFoundError, PtError

MANIFEST_TYPES = ", ".join([
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
])
_ECR_RE = re.compile(r"^(\d{12})\.dkr\.ecr(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")


class RegistryError(PtError):
    pass


def is_local(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
    return name in ("localhost", "127.0.0.1", "[::1]") or name.endswith(".localhost")


def ecr_parts(host: str) -> tuple[str, str] | None:
    """(account, region) when `host` is an ECR registry."""
    m = _ECR_RE.match(host)
    return (m[1], m[2]) if m else None


@dataclass
class Credentials:
    username: str
    password: str

    def auth_config(self) -> dict[str, str]:
        return {"username": self.username, "password": self.password}


def ecr_credentials(ecr_client, account: str | None = None) -> Credentials:
    """Basic-auth credentials for ECR from GetAuthorizationToken (valid 12 hours)."""
    from pipeline_tools.core.output import register_secret

    kwargs = {"registryIds": [account]} if account else {}
    data = ecr_client.get_authorization_token(**kwargs)["authorizationData"][0]
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    register_secret(password)
    return Credentials(user, password)


class Registry:
    """One registry host. `timeout` bounds each request; connections are reused."""

    def __init__(self, host: str, credentials: Credentials | None = None, timeout: float = 15.0,
                 insecure_http: bool | None = None):
        self.host = host
        self.credentials = credentials
        self.timeout = timeout
        self.http = is_local(host) if insecure_http is None else insecure_http
        self._conn: http.client.HTTPConnection | None = None
        self._bearer: str | None = None

    # --- transport ---------------------------------------------------------------------------
    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self.http:
                self._conn = http.client.HTTPConnection(self.host, timeout=self.timeout)
            else:
                self._conn = http.client.HTTPSConnection(self.host, timeout=self.timeout,
                                                         context=ssl.create_default_context())
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        h = {"User-Agent": "pipeline-tools", **(extra or {})}
        if self._bearer:
            h["Authorization"] = f"Bearer {self._bearer}"
        elif self.credentials:
            token = base64.b64encode(f"{self.credentials.username}:{self.credentials.password}".encode()).decode()
            h["Authorization"] = f"Basic {token}"
        return h

    def _request(self, method: str, path: str, headers: dict[str, str] | None = None,
                 body: bytes | None = None, _retried: bool = False) -> tuple[int, dict[str, str], bytes]:
        scheme = "http" if self.http else "https"
        try:
            conn = self._connection()
            conn.request(method, path, body=body, headers=self._headers(headers))
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as e:
            self.close()
            if not _retried and isinstance(e, http.client.RemoteDisconnected | BrokenPipeError |
                                           ConnectionResetError):
                return self._request(method, path, headers, body, _retried=True)
            reason = getattr(e, "reason", None) or getattr(e, "strerror", None) or str(e) or type(e).__name__
            raise RegistryError(f"cannot reach registry {scheme}://{self.host}: {reason}",
                                "check the registry host (PT_REGISTRY / `registry:` in pipeline.yml) "
                                "and network access") from None
        hdrs = {k.lower(): v for k, v in resp.getheaders()}
        if resp.status == 401 and not _retried and self._bearer is None:
            challenge = hdrs.get("www-authenticate", "")
            if challenge.lower().startswith("bearer ") and self._fetch_bearer(challenge):
                return self._request(method, path, headers, body, _retried=True)
        return resp.status, hdrs, data

    def _fetch_bearer(self, challenge: str) -> bool:
        """Token auth (docker distribution spec), for registries that are neither ECR nor open."""
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = params.pop("realm", None)
        if not realm:
            return False
        url = realm + "?" + urllib.parse.urlencode(params)
        req = urllib.request.Request(url, headers={"User-Agent": "pipeline-tools"})
        if self.credentials:
            token = base64.b64encode(f"{self.credentials.username}:{self.credentials.password}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                payload = json.loads(r.read())
        except Exception:
            return False
        self._bearer = payload.get("token") or payload.get("access_token")
        if self._bearer:
            from pipeline_tools.core.output import register_secret

            register_secret(self._bearer)
        return bool(self._bearer)

    def _auth_failed(self, status: int, repo: str) -> RegistryError:
        what = "authentication failed" if status == 401 else "access denied"
        hint = ("ECR: the role needs ecr:GetAuthorizationToken and ecr:BatchGetImage on the repository"
                if ecr_parts(self.host) else
                "log in to the registry (docker login) or check PT_REGISTRY")
        return RegistryError(f"registry {self.host}: {what} for repository {repo} (HTTP {status})", hint)

    # --- API -----------------------------------------------------------------------------------
    def manifest_digest(self, repo: str, reference: str) -> str | None:
        """The digest of `repo:reference` (one HEAD), or None when the tag or repository is absent."""
        status, hdrs, _ = self._request("HEAD", f"/v2/{repo}/manifests/{reference}", {"Accept": MANIFEST_TYPES})
        if status == 200:
            digest = hdrs.get("docker-content-digest")
            if digest:
                return digest
            # Some registries omit the header on HEAD: compute it from the body.
            status, hdrs, body = self._request("GET", f"/v2/{repo}/manifests/{reference}", {"Accept": MANIFEST_TYPES})
            if status == 200:
                import hashlib

                return hdrs.get("docker-content-digest") or "sha256:" + hashlib.sha256(body).hexdigest()
        if status == 404:
            return None
        if status in (401, 403):
            raise self._auth_failed(status, repo)
        raise RegistryError(f"registry {self.host}: HEAD /v2/{repo}/manifests/{reference} answered HTTP {status}",
                            "check the registry's health and retry")

    def retag(self, repo: str, source: str, tag: str) -> str:
        """Point `tag` at the manifest `source` points at (no pull, no push of layers)."""
        status, hdrs, body = self._request("GET", f"/v2/{repo}/manifests/{source}", {"Accept": MANIFEST_TYPES})
        if status == 404:
            raise NotFoundError(f"{self.host}/{repo}:{source} not found in the registry")
        if status in (401, 403):
            raise self._auth_failed(status, repo)
        if status != 200:
            raise RegistryError(f"registry {self.host}: GET manifest {repo}:{source} answered HTTP {status}")
        ctype = hdrs.get("content-type", "application/vnd.docker.distribution.manifest.v2+json")
        status, hdrs2, data = self._request("PUT", f"/v2/{repo}/manifests/{tag}", {"Content-Type": ctype}, body)
        if status in (200, 201):
            return hdrs2.get("docker-content-digest") or hdrs.get("docker-content-digest", "")
        if status in (401, 403):
            raise self._auth_failed(status, repo)
        text = data.decode(errors="replace")[:200]
        if "TAG_INVALID" in text or "ImageTagAlreadyExists" in text or "already exists" in text:
            existing = self.manifest_digest(repo, tag)
            if existing and existing == hdrs.get("docker-content-digest"):
                return existing
            raise RegistryError(f"{self.host}/{repo}:{tag} already exists and points at another image "
                                f"({existing}); the repository's tags are immutable",
                                "use a new tag; immutable tags are never moved")
        raise RegistryError(f"registry {self.host}: PUT manifest {repo}:{tag} answered HTTP {status}: {text}")


class EcrRegistry:
    """The same questions as `Registry`, asked through the ECR API instead of the registry protocol:
    `describe_images` for a tag's digest, `batch_get_image` + `put_image` to add a tag. One request
    each, no token exchange, and ECR's own errors (ImageTagAlreadyExistsException …) instead of
    HTTP status codes. `Registry` stays for registries that are not ECR (the local one)."""

    def __init__(self, host: str, ecr_client, account: str | None = None):
        self.host = host
        self.ecr = ecr_client
        self.account = account or (ecr_parts(host) or ("", ""))[0] or None

    def close(self) -> None:
        pass

    def _ids(self) -> dict:
        return {"registryId": self.account} if self.account else {}

    @staticmethod
    def _image_id(reference: str) -> dict:
        return {"imageDigest": reference} if reference.startswith("sha256:") else {"imageTag": reference}

    def manifest_digest(self, repo: str, reference: str) -> str | None:
        from botocore.exceptions import ClientError

        try:
            resp = self.ecr.describe_images(repositoryName=repo, imageIds=[self._image_id(reference)], **self._ids())
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if code in ("ImageNotFoundException", "RepositoryNotFoundException"):
                return None
            raise
        details = resp.get("imageDetails") or []
        return details[0].get("imageDigest") if details else None

    def retag(self, repo: str, source: str, tag: str) -> str:
        from botocore.exceptions import ClientError

        resp = self.ecr.batch_get_image(repositoryName=repo, imageIds=[self._image_id(source)],
                                        acceptedMediaTypes=[t.strip() for t in MANIFEST_TYPES.split(",")],
                                        **self._ids())
        images = resp.get("images") or []
        if not images:
            raise NotFoundError(f"{self.host}/{repo}:{source} not found in the registry")
        image = images[0]
        kwargs = {"repositoryName": repo, "imageManifest": image["imageManifest"], "imageTag": tag, **self._ids()}
        if image.get("imageManifestMediaType"):
            kwargs["imageManifestMediaType"] = image["imageManifestMediaType"]
        digest = image.get("imageId", {}).get("imageDigest", "")
        try:
            put = self.ecr.put_image(**kwargs)
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if code == "ImageAlreadyExistsException":
                return digest
            if code == "ImageTagAlreadyExistsException":
                existing = self.manifest_digest(repo, tag)
                if existing and existing == digest:
                    return existing
                raise RegistryError(f"{self.host}/{repo}:{tag} already exists and points at another image "
                                    f"({existing}); the repository's tags are immutable",
                                    "use a new tag; immutable tags are never moved") from None
            raise
        return put.get("image", {}).get("imageId", {}).get("imageDigest") or digest
