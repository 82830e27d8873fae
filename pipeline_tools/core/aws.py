"""The one place that builds boto3 sessions and clients.

Region/profile resolution, AWS_ENDPOINT_URL (local mode and tests), adaptive retries with a
bounded attempt count, a `pipeline-tools/<version>` user agent, clients cached per service.
Nothing here runs at import time. One botocore session per factory makes its clients; boto3
(and s3transfer under it, ~0.1 s of imports) is imported only for S3 clients, which carry
boto3's managed transfers (`upload_file`, `upload_fileobj`), or when `session` is asked for.
"""

from __future__ import annotations

import os
from typing import Any

from pipeline_tools import __version__
from pipeline_tools.core.envvars import env_int
from pipeline_tools.core.errors import AwsError, UsageError

DEFAULT_MAX_ATTEMPTS = 5
MAX_ATTEMPTS_LIMIT = 20


# botocore's data loader per data path, shared by every botocore session pt makes: a second
# factory (another region, a stage role, the ledger's account) reuses the parsed endpoints.json
# and service models instead of loading them again. Credentials stay per session.
_LOADERS: dict[str, Any] = {}


def _share_loader(core: Any) -> Any:
    path = str(core.get_config_variable("data_path"))
    loader = _LOADERS.get(path)
    if loader is None:
        _LOADERS[path] = core.get_component("data_loader")
    else:
        core.register_component("data_loader", loader)
    return core


def endpoint_url() -> str | None:
    """AWS_ENDPOINT_URL if set (a malformed one is a usage error)."""
    from pipeline_tools.core.envvars import endpoint_url as checked

    return checked()


def is_local() -> bool:
    """True when pointed at a local AWS (moto server in `pt local up` and the tests)."""
    return bool(os.environ.get("AWS_ENDPOINT_URL"))


class AwsFactory:
    """Builds and caches clients. Pass `factory.client("lambda")` etc. to library functions.

    With `role` (an `accounts.RoleChoice`) and `source` (the caller's factory), the session holds
    that role's credentials, assumed through the source's STS client on first use and refreshed
    before they expire (a deploy with a long bake outlives one STS session).
    """

    def __init__(self, region: str | None = None, profile: str | None = None,
                 endpoint: str | None = None, max_attempts: int | None = None, *,
                 role: Any = None, source: AwsFactory | None = None):
        self.region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        self.profile = profile or None
        self.endpoint = endpoint if endpoint is not None else endpoint_url()
        self.max_attempts = max_attempts or env_int("PT_AWS_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS,
                                                    minimum=1, maximum=MAX_ATTEMPTS_LIMIT)
        if (role is None) != (source is None):
            raise ValueError("role and source go together")
        self.role = role
        self.source = source
        self._session = None  # a boto3 Session over _core (or one set from outside: local stack, tests)
        self._core = None     # the botocore session every client of this factory comes from
        self._clients: dict[tuple[str, str | None], Any] = {}

    def _core_session(self):
        """The factory's botocore session: the profile's (or default) credential chain, or the
        assumed role's refreshing credentials."""
        if self._core is None:
            if self.role is not None:
                self._core = self._assumed_core()
            else:
                import botocore.exceptions
                import botocore.session

                try:
                    core = botocore.session.Session(profile=self.profile)
                    if self.region:
                        core.set_config_variable("region", self.region)
                    core.get_scoped_config()  # an unknown profile fails here, as boto3.Session(...) did
                except botocore.exceptions.ProfileNotFound as e:
                    raise UsageError(str(e), "list profiles with `aws configure list-profiles`") from None
                self._core = _share_loader(core)
        return self._core

    @property
    def session(self):
        """A boto3 Session sharing the factory's botocore session (credentials, caches)."""
        if self._session is None:
            import boto3

            self._session = boto3.session.Session(botocore_session=self._core_session(), region_name=self.region)
        return self._session

    def client_config(self):
        from botocore.config import Config as BotoConfig

        return BotoConfig(
            retries={"mode": "adaptive", "total_max_attempts": self.max_attempts},
            user_agent_extra=f"pipeline-tools/{__version__}",
            connect_timeout=10,
            read_timeout=60,
        )

    def client(self, service: str, region: str | None = None):
        key = (service, region)
        if key not in self._clients:
            region = region or self.region or (self._session.region_name if self._session is not None else
                                               self._core_session().get_config_variable("region"))
            if not region:
                raise AwsError("no AWS region configured",
                               "set `region:` in pipeline.yml, pass --region or set AWS_REGION",
                               exit_code=2)
            kwargs: dict[str, Any] = {"region_name": region, "config": self.client_config()}
            if self.endpoint:
                kwargs["endpoint_url"] = self.endpoint
            if service == "s3" or self._session is not None:
                client = self.session.client(service, **kwargs)  # S3: boto3's managed transfers
            else:
                client = self._core_session().create_client(service, **kwargs)
            if os.environ.get("PT_DEBUG") == "1":
                from pipeline_tools.core import wirelog

                wirelog.attach(client)
            self._clients[key] = client
        return self._clients[key]

    def caller_arn(self) -> str:
        """The STS caller identity ARN (who is acting), cached. For an assumed stage role it is
        still the original caller: approvals and records name the person, not the deploy role."""
        if self.source is not None:
            return self.source.caller_arn()
        if not hasattr(self, "_caller"):
            self._caller = self.client("sts").get_caller_identity()["Arn"]
        return self._caller

    def account_id(self) -> str:
        """The account this factory's clients act in (the assumed role's, else the caller's)."""
        if self.role is not None:
            return self.role.account
        return self.caller_arn().split(":")[4]

    def _assumed_session(self):
        """A boto3 Session holding the role's refreshing credentials."""
        import boto3

        return boto3.session.Session(botocore_session=self._assumed_core(), region_name=self.region)

    def _assumed_core(self):
        """A botocore session holding the role's credentials, assumed through the source factory's
        STS client on first use and refreshed before they expire."""
        import botocore.session
        from botocore.credentials import RefreshableCredentials

        assert self.source is not None and self.role is not None
        sts, role = self.source.client("sts"), self.role

        def fetch() -> dict:
            try:
                c = sts.assume_role(RoleArn=role.arn, RoleSessionName=role.session_name)["Credentials"]
            except Exception as e:
                raise _assume_error(e, role, self.source) from None
            return {"access_key": c["AccessKeyId"], "secret_key": c["SecretAccessKey"],
                    "token": c["SessionToken"], "expiry_time": c["Expiration"].isoformat()}

        core = botocore.session.Session()
        core._credentials = RefreshableCredentials.create_from_metadata(
            metadata=fetch(), refresh_using=fetch, method="sts-assume-role")
        if self.region:
            core.set_config_variable("region", self.region)
        return _share_loader(core)


def _assume_error(exc: BaseException, role: Any, source: AwsFactory) -> BaseException:
    """AssumeRole failed: one line naming the role and the pipeline.yml key that chose it."""
    from pipeline_tools.core.errors import translate

    code = client_error_code(exc)
    if code is None:
        return translate(exc) or exc
    msg = str(getattr(exc, "response", {}).get("Error", {}).get("Message", "")).strip()
    try:
        caller = source.caller_arn()
    except Exception:
        caller = "the caller"
    denied = code in ("AccessDenied", "AccessDeniedException", "InvalidClientTokenId", "NoSuchEntity")
    return AwsError(f"cannot assume role {role.arn} (account {role.account}): {code}" + (f": {msg}" if msg else ""),
                    role.hint(caller), code=code, operation="AssumeRole", exit_code=2 if denied else None)


def client_error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ClientError, else None."""
    resp = getattr(exc, "response", None)
    if isinstance(resp, dict):
        return resp.get("Error", {}).get("Code")
    return None


# --- lean clients: botocore without boto3 (appended for `pt artifacts`; see lean_client) -------


def lean_session(factory: AwsFactory) -> Any:
    """One botocore session per plain factory (no assumed role, no boto3 session built yet),
    shared by its lean clients: credentials are resolved once and every model file is read once.
    Its data loader checks only the services it is asked for (`_lean_loader`). None when the
    factory is not plain (its boto3 session, or the role's, is the one to use)."""
    if factory.role is not None or factory._session is not None:
        return None
    sess = getattr(factory, "_lean_botocore_session", None)
    if sess is None:
        import botocore.session

        sess = botocore.session.Session(profile=factory.profile)
        sess.register_component("data_loader", _lean_loader(sess.get_config_variable("data_path")))
        factory._lean_botocore_session = sess  # type: ignore[attr-defined]
    return sess


def lean_client(factory: AwsFactory, service: str, config: Any = None, *, cache: bool = True) -> Any:
    """`factory.client(service)` without importing boto3 (~0.05 s) or building a boto3 session
    when the factory is plain: a botocore client (the very class boto3 hands out), the same
    credential chain, region, endpoint, retries and user agent (plus `config`, merged). With
    `cache` it is also the factory's cached client, so later `factory.client(service)` calls
    (e.g. `caller_arn`, the ledger) reuse it. A factory that is not plain gets `factory.client`
    (or, with `config`, a client of its own session)."""
    key = (service, None)
    if config is None and key in factory._clients:
        return factory._clients[key]
    import botocore.exceptions

    try:
        sess = lean_session(factory)
    except botocore.exceptions.ProfileNotFound as e:
        raise UsageError(str(e), "list profiles with `aws configure list-profiles`") from None
    if sess is None:
        if config is None:
            return factory.client(service)
        kwargs: dict[str, Any] = {"region_name": factory.region or factory.session.region_name,
                                  "config": factory.client_config().merge(config)}
        if factory.endpoint:
            kwargs["endpoint_url"] = factory.endpoint
        return factory.session.client(service, **kwargs)
    try:
        region = factory.region or sess.get_config_variable("region")
        if not region:
            raise AwsError("no AWS region configured",
                           "set `region:` in pipeline.yml, pass --region or set AWS_REGION", exit_code=2)
        merged = factory.client_config() if config is None else factory.client_config().merge(config)
        client = sess.create_client(service, region_name=region, endpoint_url=factory.endpoint or None,
                                    config=merged)
    except botocore.exceptions.ProfileNotFound as e:
        raise UsageError(str(e), "list profiles with `aws configure list-profiles`") from None
    if os.environ.get("PT_DEBUG") == "1":
        from pipeline_tools.core import wirelog

        wirelog.attach(client)
    if cache and config is None:
        factory._clients[key] = client
    return client


def _lean_loader(search_path: str | None) -> Any:
    """botocore's data loader (same search path: AWS_DATA_PATH and the bundled data), except
    that loading a model checks that one service's directory instead of listing every service
    directory of the SDK for each model type (~400 directories, ~20 ms a type)."""
    import botocore.exceptions
    import botocore.loaders

    class LeanLoader(botocore.loaders.Loader):
        @botocore.loaders.instance_cache
        def load_service_model(self, service_name, type_name, api_version=None):
            extras = getattr(self, "_extras_processor", None)
            if api_version is not None or extras is None:
                return super().load_service_model(service_name, type_name, api_version)
            try:
                api_version = self.determine_latest_version(service_name, type_name)
            except botocore.exceptions.DataNotFoundError:  # unknown service: botocore's own error
                return super().load_service_model(service_name, type_name)
            model = self.load_data(os.path.join(service_name, api_version, type_name))
            extras.process(model, self._find_extras(service_name, type_name, api_version))
            return model

    if search_path is None:
        return LeanLoader()
    return LeanLoader(extra_search_paths=[os.path.expanduser(os.path.expandvars(p))
                                          for p in search_path.split(os.pathsep)])
