"""``nexus aws cost``: a monthly and per-job estimate from the instance types and hours in the config.

Prices of the lines that dominate (the serving EC2 instances or Fargate, SageMaker training, Glue) come
from the AWS Price List API for the config's ``aws.region`` when AWS credentials are available
(:func:`region_prices`); otherwise, or when the API does not answer, from the small table kept here:
on-demand list prices in USD for us-east-1 as of PRICES_AS_OF. The other lines (load balancer, NAT, S3,
CloudWatch ...) always use the table. The estimate says which source each figure came from, and every
line shows the price it assumed. Override or add an instance type with ``--price TYPE=USD_PER_HOUR``.

Usage-based charges (logs, metrics, NAT data) depend on traffic; their lines say which volume they
assume. What is left out is listed in ``EXCLUDED`` and printed under the table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from nexus_llm.config import NexusConfig

PRICES_AS_OF = "2025-01, us-east-1, on-demand"

# USD per instance-hour
EC2_HOURLY = {
    "g4dn.xlarge": 0.526,
    "g4dn.2xlarge": 0.752,
    "g5.xlarge": 1.006,
    "g5.2xlarge": 1.212,
    "g5.4xlarge": 1.624,
    "g5.12xlarge": 5.672,
    "g6.xlarge": 0.8048,
    "g6.2xlarge": 0.9776,
    "g6e.xlarge": 1.861,
    "p3.2xlarge": 3.06,
}
SAGEMAKER_TRAINING_HOURLY = {
    "ml.m5.xlarge": 0.23,
    "ml.c5.xlarge": 0.204,
    "ml.g4dn.xlarge": 0.7364,
    "ml.g5.xlarge": 1.408,
    "ml.g5.2xlarge": 1.515,
    "ml.g5.4xlarge": 2.03,
    "ml.g5.12xlarge": 7.09,
    "ml.g5.48xlarge": 20.36,
    "ml.p3.2xlarge": 3.825,
    "ml.p4d.24xlarge": 37.688,
}
FARGATE_VCPU_HOUR = 0.04048
FARGATE_GB_HOUR = 0.004445
GLUE_DPU_HOUR = 0.44
GLUE_DPU_PER_WORKER = {"G.1X": 1, "G.2X": 2, "G.4X": 4, "G.8X": 8}
ALB_HOUR, ALB_LCU_HOUR = 0.0225, 0.008
NAT_HOUR = 0.045
NAT_GB = 0.045  # data processed
PUBLIC_IPV4_HOUR = 0.005
EBS_GP3_GB_MONTH = 0.08
S3_STANDARD_GB_MONTH = 0.023
ECR_GB_MONTH = 0.10
KMS_KEY_MONTH = 1.0
SECRET_MONTH = 0.40
ALARM_MONTH = 0.10
CW_METRIC_MONTH = 0.30  # custom metrics, first 10,000
CW_LOGS_INGEST_GB = 0.50
VENDED_LOGS_S3_GB = 0.25  # VPC flow logs delivered to S3
SPOT_SAVING = 0.6  # assumed managed-spot discount; AWS quotes "up to 90 %", it varies by type and time
HOURS_PER_MONTH = 730

# Assumed volumes of the usage-based lines (shown in each line's assumption).
LOG_KB_PER_REQUEST = 1.0  # one EMF line (~0.4 KB) plus the server's request log
EMF_METRICS = 3  # ResponseTime, TokensGenerated, ErrorCount; one dimension set (Service)
INSIGHTS_METRICS = 25  # Container Insights: cluster, service and task-family level metrics
INSIGHTS_LOG_GB_PER_TASK = 0.5  # performance log events per always-on task and month
FLOW_LOG_GB = 5.0
NAT_BASE_GB = 20.0  # AWS API calls, host bootstrap; S3 (models, image layers) uses the free endpoint
ECR_IMAGES_GB = 10.0  # the train and serve images (CUDA torch), a few tags

EXCLUDED = [
    "data transfer out to the internet (about $0.09/GB: responses to clients)",
    "log and metric storage beyond ingestion ($0.03/GB-month, grows over the retention period)",
    "request charges of S3, KMS and Secrets Manager (cents per 10,000 requests)",
    "SageMaker and Glue job logs",
]


@dataclass
class Line:
    group: str
    item: str
    assumption: str
    unit_price: str
    monthly_usd: float


PRICE_LIST_ENDPOINT_REGION = "us-east-1"
"""The Price List Query API answers in a few regions only; prices of every region come from there."""


@dataclass
class PriceBook:
    """Prices found for this config's region (keys ``ec2:<type>``, ``sagemaker:<type>``,
    ``fargate:vcpu``, ``fargate:gb``, ``glue:dpu``), and a sentence saying where prices came from."""

    source: str
    live: dict[str, float] = field(default_factory=dict)

    def get(self, key: str, fallback: float) -> float:
        return self.live.get(key, fallback)


def table_book(region: str, why: str) -> PriceBook:
    differs = "" if region == "us-east-1" else f"; {region} may differ"
    return PriceBook(f"built-in table ({PRICES_AS_OF}{differs}): {why}")


def region_prices(cfg: NexusConfig, client: Any = None) -> PriceBook:
    """Look up this config's instance prices in the AWS Price List API for ``aws.region``.

    ``client`` is a boto3 ``pricing`` client (default: one from the standard credential chain). Never
    raises: without credentials, or when the API fails or has no price for a type, the table is used
    and the returned book says why.
    """
    region = cfg.aws.region
    if client is None:
        import boto3

        if boto3.session.Session().get_credentials() is None:
            return table_book(region, "no AWS credentials for the AWS Price List API")
        from nexus_llm.deploy.clients import AwsClients

        client = AwsClients(PRICE_LIST_ENDPOINT_REGION, cfg.aws.endpoint_url).client("pricing")
    from botocore.exceptions import BotoCoreError, ClientError

    sv, tr = cfg.aws.serving, cfg.aws.training
    queries: dict[str, tuple[str, dict[str, str], str | None]] = {
        f"sagemaker:{tr.instance_type}": ("AmazonSageMaker", {"instanceName": tr.instance_type}, "Train:"),
        "glue:dpu": ("AWSGlue", {}, "-ETL-DPU-Hour"),  # not ETL-Flex-DPU-Hour
    }
    if sv.capacity == "gpu":
        ec2 = {"instanceType": sv.instance_type, "operatingSystem": "Linux", "tenancy": "Shared",
               "preInstalledSw": "NA", "capacitystatus": "Used"}  # fmt: skip
        queries[f"ec2:{sv.instance_type}"] = ("AmazonEC2", ec2, None)
    else:
        queries["fargate:vcpu"] = ("AmazonECS", {}, "-Fargate-vCPU-Hours:perCPU")
        queries["fargate:gb"] = ("AmazonECS", {}, "-Fargate-GB-Hours")
    live: dict[str, float] = {}
    try:
        for key, (service, attributes, usage_suffix) in queries.items():
            price = _lookup(client, service, {"regionCode": region, **attributes}, usage_suffix)
            if price is not None:
                live[key] = price
    except (BotoCoreError, ClientError) as err:
        return table_book(region, f"the AWS Price List API failed ({err})")
    if not live:
        return table_book(region, f"the AWS Price List API has none of these prices for {region}")
    missing = [k for k in queries if k not in live]
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    source = f"AWS Price List API, {region}, on-demand, {today}: {', '.join(live)}"
    if missing:
        source += f" (not found there, from the table: {', '.join(missing)})"
    return PriceBook(source + f"; other lines: built-in table ({PRICES_AS_OF})", live)


def _lookup(client: Any, service: str, attributes: dict[str, str], usage_suffix: str | None) -> float | None:
    """The hourly on-demand USD price of the products matching ``attributes`` whose usage type holds
    ``usage_suffix`` (spot usage types excluded), or None. Should several differ, the highest counts:
    an estimate errs on the side of cost."""
    filters = [{"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in attributes.items()]
    prices = []
    for page in client.get_paginator("get_products").paginate(ServiceCode=service, Filters=filters):
        for item in page.get("PriceList", []):
            product = json.loads(item) if isinstance(item, str) else item
            usage = product.get("product", {}).get("attributes", {}).get("usagetype", "")
            if "Spot" in usage or (usage_suffix is not None and usage_suffix not in usage):
                continue
            for term in product.get("terms", {}).get("OnDemand", {}).values():
                for dim in term.get("priceDimensions", {}).values():
                    usd = float(dim.get("pricePerUnit", {}).get("USD", 0) or 0)
                    unit = dim.get("unit", "").lower()
                    if usd > 0 and ("hour" in unit or "hrs" in unit):
                        prices.append(usd)
    return max(prices) if prices else None


class PriceError(ValueError):
    """An instance type with no price in the table (add one with ``--price``)."""


def parse_prices(items: list[str]) -> dict[str, float]:
    """``["g5.xlarge=1.006", ...]`` from ``--price`` → ``{"g5.xlarge": 1.006}``."""
    prices = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            price = float(value)
        except ValueError:
            price = float("nan")
        if not key or not price >= 0:  # also refuses nan
            raise ValueError(f"--price {item!r}: expected TYPE=USD_PER_HOUR, e.g. g5.xlarge=1.006")
        prices[key] = price
    return prices


def _price(table: dict[str, float], extra: dict[str, float], itype: str, live: float | None = None) -> float:
    if itype in extra:
        return extra[itype]
    if live is not None:
        return live
    if itype in table:
        return table[itype]
    raise PriceError(f"no price for {itype}; pass --price {itype}=USD_PER_HOUR (known: {', '.join(table)})")


def estimate(cfg: NexusConfig, prices: dict[str, float] | None = None, book: PriceBook | None = None) -> dict:
    """Monthly lines (serving, network, storage, monitoring, jobs), the serving compute at
    ``max_tasks``, and the cost of one job of each kind. ``book``: prices looked up for the region
    (:func:`region_prices`); without it, the table."""
    prices = prices or {}
    book = book or table_book(cfg.aws.region, "no price lookup asked for")
    aws = cfg.aws
    per_job = {"training": training_job_cost(cfg, prices, book), "data": data_job_cost(cfg, book)}
    lines = [
        *_serving_lines(cfg, prices, book),
        *_network_lines(cfg),
        *_storage_lines(cfg),
        *_monitoring_lines(cfg),
        *_job_lines(cfg, per_job["training"], per_job["data"]),
    ]
    return {
        "prices_as_of": PRICES_AS_OF,
        "price_source": book.source,
        "region": aws.region,
        "lines": lines,
        "monthly_total_usd": sum(line.monthly_usd for line in lines),
        "at_max_tasks": _compute_line(cfg, prices, aws.serving.max_tasks, book),
        "excluded": EXCLUDED,
        "per_job": per_job,
        "budget_usd": aws.budget.monthly_usd,
    }


def _compute_line(cfg: NexusConfig, prices: dict[str, float], tasks: int, book: PriceBook) -> Line:
    """Serving compute for ``tasks`` tasks (GPU hosts or Fargate tasks) over the configured hours."""
    sv = cfg.aws.serving
    hours = f"{sv.hours_per_month:g} h"
    if sv.capacity == "gpu":
        p = _price(EC2_HOURLY, prices, sv.instance_type, book.live.get(f"ec2:{sv.instance_type}"))
        usd = tasks * sv.hours_per_month * p
        return Line("serving", f"EC2 {sv.instance_type}", f"{tasks} hosts x {hours}", f"${p}/h", usd)
    vcpu, gb = sv.cpu / 1024, sv.memory_mb / 1024
    per_h = vcpu * book.get("fargate:vcpu", FARGATE_VCPU_HOUR) + gb * book.get("fargate:gb", FARGATE_GB_HOUR)
    item = f"Fargate {vcpu:g} vCPU / {gb:g} GB"
    return Line(
        "serving",
        item,
        f"{tasks} tasks x {hours}",
        f"${per_h:.4f}/task-h",
        tasks * sv.hours_per_month * per_h,
    )


def _serving_lines(cfg: NexusConfig, prices: dict[str, float], book: PriceBook) -> list[Line]:
    sv = cfg.aws.serving
    out = [_compute_line(cfg, prices, sv.min_tasks, book)]
    if sv.capacity == "gpu":
        from nexus_llm.deploy.stacks.serving import HOST_DISK_GB

        disks = sv.min_tasks * HOST_DISK_GB
        out.append(
            Line(
                "serving",
                "EBS gp3 (host disks)",
                f"{sv.min_tasks} x {HOST_DISK_GB} GB",
                f"${EBS_GP3_GB_MONTH}/GB-month",
                disks * EBS_GP3_GB_MONTH,
            )
        )
    alb_price = f"${ALB_HOUR}/h + ${ALB_LCU_HOUR}/LCU-h"
    alb = HOURS_PER_MONTH * (ALB_HOUR + ALB_LCU_HOUR)
    out.append(Line("serving", "Application Load Balancer", f"{HOURS_PER_MONTH} h, 1 LCU", alb_price, alb))
    if not sv.allow_anonymous:
        out.append(
            Line("serving", "Secrets Manager secret", "1 (API keys)", f"${SECRET_MONTH}/month", SECRET_MONTH)
        )
    return out


def requests_per_month(cfg: NexusConfig) -> float:
    """Assumed traffic: min_tasks at the scaling target (more would scale out)."""
    sv = cfg.aws.serving
    return sv.min_tasks * sv.target_requests_per_task * 60 * sv.hours_per_month


def log_gb(cfg: NexusConfig) -> float:
    return requests_per_month(cfg) * LOG_KB_PER_REQUEST / 1e6


def _network_lines(cfg: NexusConfig) -> list[Line]:
    nat = cfg.aws.network.nat_gateways
    nat_gb = NAT_BASE_GB + log_gb(cfg)  # logs and metrics leave the private subnets through the NAT
    ips = nat + 2  # one per NAT gateway, one per load-balancer zone
    return [
        Line(
            "network",
            "NAT gateway",
            f"{nat} x {HOURS_PER_MONTH} h",
            f"${NAT_HOUR}/h",
            nat * HOURS_PER_MONTH * NAT_HOUR,
        ),
        Line(
            "network",
            "NAT gateway data",
            f"{nat_gb:,.1f} GB ({NAT_BASE_GB:g} GB AWS APIs + the logs)",
            f"${NAT_GB}/GB",
            nat_gb * NAT_GB,
        ),
        Line(
            "network",
            "public IPv4 addresses",
            f"{ips} x {HOURS_PER_MONTH} h",
            f"${PUBLIC_IPV4_HOUR}/h",
            ips * HOURS_PER_MONTH * PUBLIC_IPV4_HOUR,
        ),
        Line(
            "network",
            "VPC flow logs to S3",
            f"{FLOW_LOG_GB:g} GB",
            f"${VENDED_LOGS_S3_GB}/GB",
            FLOW_LOG_GB * VENDED_LOGS_S3_GB,
        ),
    ]


def _storage_lines(cfg: NexusConfig) -> list[Line]:
    gb = cfg.aws.storage.expected_gb
    return [
        Line(
            "storage",
            "S3 Standard",
            f"{gb:g} GB",
            f"${S3_STANDARD_GB_MONTH}/GB-month",
            gb * S3_STANDARD_GB_MONTH,
        ),
        Line(
            "storage",
            "ECR images",
            f"{ECR_IMAGES_GB:g} GB",
            f"${ECR_GB_MONTH}/GB-month",
            ECR_IMAGES_GB * ECR_GB_MONTH,
        ),
        Line("storage", "KMS key", "1 key", f"${KMS_KEY_MONTH}/month", KMS_KEY_MONTH),
    ]


def _monitoring_lines(cfg: NexusConfig) -> list[Line]:
    sv = cfg.aws.serving
    requests = requests_per_month(cfg)
    logs = log_gb(cfg)
    insights_gb = sv.min_tasks * INSIGHTS_LOG_GB_PER_TASK
    insights = INSIGHTS_METRICS * CW_METRIC_MONTH + insights_gb * CW_LOGS_INGEST_GB
    return [
        Line("monitoring", "CloudWatch alarms", "2 alarms", f"${ALARM_MONTH}/alarm-month", 2 * ALARM_MONTH),
        Line(
            "monitoring",
            "CloudWatch Logs ingestion",
            f"{logs:,.1f} GB: {requests / 1e6:,.1f} M requests x {LOG_KB_PER_REQUEST:g} KB",
            f"${CW_LOGS_INGEST_GB}/GB",
            logs * CW_LOGS_INGEST_GB,
        ),
        Line(
            "monitoring",
            "EMF custom metrics",
            f"{EMF_METRICS} metrics x 1 dimension set",
            f"${CW_METRIC_MONTH}/metric-month",
            EMF_METRICS * CW_METRIC_MONTH,
        ),
        Line(
            "monitoring",
            "Container Insights",
            f"~{INSIGHTS_METRICS} metrics + {insights_gb:g} GB performance logs",
            f"${CW_METRIC_MONTH}/metric-month + ${CW_LOGS_INGEST_GB}/GB",
            insights,
        ),
    ]


def _job_lines(cfg: NexusConfig, train: dict, data: dict) -> list[Line]:
    """Monthly lines for the jobs, from the cost of one training job and one data job."""
    tr, dj = cfg.aws.training, cfg.aws.data_job
    spot = " spot" if tr.spot else ""
    train_runs = f"{tr.jobs_per_month:g} jobs x {tr.hours_per_job:g} h x {tr.instance_count}"
    data_runs = f"{dj.jobs_per_month:g} runs x {dj.hours_per_job:g} h"
    return [
        Line(
            "jobs",
            f"SageMaker {tr.instance_type}{spot}",
            train_runs,
            train["unit_price"],
            tr.jobs_per_month * train["usd"],
        ),
        Line(
            "jobs",
            f"Glue {dj.worker_type} x {dj.workers}",
            data_runs,
            f"${data['dpu_hour']:g}/DPU-h",
            dj.jobs_per_month * data["usd"],
        ),
    ]


def training_job_cost(
    cfg: NexusConfig, prices: dict[str, float] | None = None, book: PriceBook | None = None
) -> dict:
    tr = cfg.aws.training
    live = book.live.get(f"sagemaker:{tr.instance_type}") if book else None
    p = _price(SAGEMAKER_TRAINING_HOURLY, prices or {}, tr.instance_type, live)
    factor = (1 - SPOT_SAVING) if tr.spot else 1.0
    usd = p * tr.instance_count * tr.hours_per_job * factor
    spot = f" x {1 - SPOT_SAVING:.0%} (spot)" if tr.spot else ""
    return {"usd": usd, "unit_price": f"${p}/h{spot}", "hours": tr.hours_per_job}


def data_job_cost(cfg: NexusConfig, book: PriceBook | None = None) -> dict:
    dj = cfg.aws.data_job
    dpus = GLUE_DPU_PER_WORKER[dj.worker_type] * dj.workers
    dpu_hour = book.get("glue:dpu", GLUE_DPU_HOUR) if book else GLUE_DPU_HOUR
    return {
        "usd": dpus * dj.hours_per_job * dpu_hour,
        "dpus": dpus,
        "hours": dj.hours_per_job,
        "dpu_hour": dpu_hour,
    }
