"""The one seam for AWS: every boto3 client of ``nexus aws`` comes from :class:`AwsClients`.

The endpoint comes from ``aws.endpoint_url`` in ``nexus.yaml`` or, when that is unset, from boto3's own
``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_<SERVICE>`` variables, so tests point every client at moto's
server on 127.0.0.1 and users can point them at LocalStack, without a code path of their own.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar

from nexus_llm.configbase import ConfigError

T = TypeVar("T")


class WaitTimeout(TimeoutError):
    """A wait for AWS outlasted its limit; the operation itself goes on in AWS."""


def poll_until(
    describe: Callable[[], T],
    finished: Callable[[T], bool],
    timeout_s: float,
    poll_s: float,
    what: str,
    on_poll: Callable[[T], None] | None = None,
) -> T:
    """Call ``describe`` every ``poll_s`` seconds until ``finished`` says so; every wait for AWS goes
    through here, so none can hang forever. Raises :class:`WaitTimeout` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = describe()
        if on_poll is not None:
            on_poll(value)
        if finished(value):
            return value
        if time.monotonic() + poll_s > deadline:
            raise WaitTimeout(
                f"{what} has not finished after {timeout_s:,.0f} s of waiting; it goes on in AWS. "
                "Follow it with `nexus aws status`, or wait longer with --timeout-minutes."
            )
        time.sleep(poll_s)


class AwsClients:
    """Cached boto3 clients for one region and (optional) endpoint."""

    def __init__(self, region: str, endpoint_url: str | None = None) -> None:
        self.region = region
        self.endpoint_url = endpoint_url
        self._account_id: str | None = None

    @classmethod
    def from_config(cls, aws_cfg: Any) -> AwsClients:
        return cls(aws_cfg.region, aws_cfg.endpoint_url)

    @functools.cache  # noqa: B019 - one client per service for the life of this object
    def client(self, service: str) -> Any:
        import boto3
        from botocore.config import Config

        kwargs: dict[str, Any] = {"region_name": self.region}
        if self.endpoint_url:
            kwargs["endpoint_url"] = self.endpoint_url
        # path-style S3 addressing works with any endpoint (an IP address has no bucket sub-domains)
        config = Config(retries={"mode": "standard", "max_attempts": 5}, s3={"addressing_style": "path"})
        return boto3.session.Session().client(service, config=config, **kwargs)

    def account_id(self) -> str:
        """The caller's account id (STS, asked once); a clear error when no credentials are configured."""
        from botocore.exceptions import BotoCoreError, ClientError

        if self._account_id is not None:
            return self._account_id
        try:
            self._account_id = self.client("sts").get_caller_identity()["Account"]
            return self._account_id
        except (BotoCoreError, ClientError) as err:
            raise ConfigError(
                f"cannot reach AWS to learn the account id ({err}). Configure credentials "
                "(AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY). `nexus aws render` and "
                "`nexus aws cost` work without them."
            ) from None


def dns_suffix(region: str) -> str:
    """The DNS suffix of the region's partition (``amazonaws.com``, ``amazonaws.com.cn`` ...), from
    botocore's endpoint data, so ECR and other host names are right outside the ``aws`` partition."""
    from botocore.exceptions import UnknownRegionError
    from botocore.loaders import create_loader
    from botocore.regions import EndpointResolver

    resolver = EndpointResolver(create_loader().load_data("endpoints"))
    try:
        return resolver.get_partition_dns_suffix(resolver.get_partition_for_region(region))
    except UnknownRegionError:
        return "amazonaws.com"
