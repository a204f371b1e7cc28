"""``nexus aws cost``: a monthly and per-job estimate from the instance types and hours in the config.

A small price table is kept here on purpose (no call to the AWS Price List API: it needs credentials,
and an estimate should be reproducible and reviewable). Prices are on-demand list prices in USD for
us-east-1 as of PRICES_AS_OF; they differ by region and change over time, and every line of the
estimate shows the price it assumed. Override or add one with ``--price TYPE=USD_PER_HOUR``.
"""

from __future__ import annotations

from dataclasses import dataclass

from nexus_llm.config import NexusConfig

PRICES_AS_OF = "2025-01, us-east-1, on-demand"

# USD per instance-hour
EC2_HOURLY = {
    "g4dn.xlarge": 0.526, "g4dn.2xlarge": 0.752, "g5.xlarge": 1.006, "g5.2xlarge": 1.212,
    "g5.4xlarge": 1.624, "g5.12xlarge": 5.672, "g6.xlarge": 0.8048, "g6.2xlarge": 0.9776,
    "g6e.xlarge": 1.861, "p3.2xlarge": 3.06,
}  # fmt: skip
SAGEMAKER_TRAINING_HOURLY = {
    "ml.m5.xlarge": 0.23, "ml.c5.xlarge": 0.204, "ml.g4dn.xlarge": 0.7364, "ml.g5.xlarge": 1.408,
    "ml.g5.2xlarge": 1.515, "ml.g5.4xlarge": 2.03, "ml.g5.12xlarge": 7.09, "ml.g5.48xlarge": 20.36,
    "ml.p3.2xlarge": 3.825, "ml.p4d.24xlarge": 37.688,
}  # fmt: skip
FARGATE_VCPU_HOUR = 0.04048
FARGATE_GB_HOUR = 0.004445
GLUE_DPU_HOUR = 0.44
GLUE_DPU_PER_WORKER = {"G.1X": 1, "G.2X": 2, "G.4X": 4, "G.8X": 8}
ALB_HOUR, ALB_LCU_HOUR = 0.0225, 0.008
NAT_HOUR = 0.045
PUBLIC_IPV4_HOUR = 0.005
EBS_GP3_GB_MONTH = 0.08
S3_STANDARD_GB_MONTH = 0.023
KMS_KEY_MONTH = 1.0
ALARM_MONTH = 0.10
SPOT_SAVING = 0.6  # assumed managed-spot discount; AWS quotes "up to 90 %", it varies by type and time
HOURS_PER_MONTH = 730


@dataclass
class Line:
    group: str
    item: str
    assumption: str
    unit_price: str
    monthly_usd: float


class PriceError(ValueError):
    """An instance type with no price in the table (add one with ``--price``)."""


def _price(table: dict[str, float], extra: dict[str, float], itype: str) -> float:
    if itype in extra:
        return extra[itype]
    if itype in table:
        return table[itype]
    raise PriceError(f"no price for {itype}; pass --price {itype}=USD_PER_HOUR (known: {', '.join(table)})")


def estimate(cfg: NexusConfig, prices: dict[str, float] | None = None) -> dict:
    """Monthly lines (serving, network, storage, monitoring, jobs) and the cost of one job of each kind."""
    prices = prices or {}
    aws = cfg.aws
    sv, tr, dj = aws.serving, aws.training, aws.data_job
    lines: list[Line] = []
    if sv.capacity == "gpu":
        p = _price(EC2_HOURLY, prices, sv.instance_type)
        lines.append(Line("serving", f"EC2 {sv.instance_type}", f"{sv.min_tasks} hosts x {sv.hours_per_month:g} h",
                          f"${p}/h", sv.min_tasks * sv.hours_per_month * p))  # fmt: skip
        lines.append(Line("serving", "EBS gp3 (host disks)", f"{sv.min_tasks} x 100 GB",
                          f"${EBS_GP3_GB_MONTH}/GB-month", sv.min_tasks * 100 * EBS_GP3_GB_MONTH))  # fmt: skip
    else:
        vcpu, gb = sv.cpu / 1024, sv.memory_mb / 1024
        per_h = vcpu * FARGATE_VCPU_HOUR + gb * FARGATE_GB_HOUR
        lines.append(Line("serving", f"Fargate {vcpu:g} vCPU / {gb:g} GB", f"{sv.min_tasks} tasks x "
                          f"{sv.hours_per_month:g} h", f"${per_h:.4f}/task-h", sv.min_tasks * sv.hours_per_month * per_h))  # fmt: skip
    lines.append(Line("serving", "Application Load Balancer", f"{HOURS_PER_MONTH} h, 1 LCU",
                      f"${ALB_HOUR}/h + ${ALB_LCU_HOUR}/LCU-h", HOURS_PER_MONTH * (ALB_HOUR + ALB_LCU_HOUR)))  # fmt: skip
    nat = aws.network.nat_gateways
    lines.append(Line("network", "NAT gateway", f"{nat} x {HOURS_PER_MONTH} h (data processed not included)",
                      f"${NAT_HOUR}/h", nat * HOURS_PER_MONTH * NAT_HOUR))  # fmt: skip
    ips = nat + 2  # one per NAT gateway, one per load-balancer zone
    lines.append(Line("network", "public IPv4 addresses", f"{ips} x {HOURS_PER_MONTH} h",
                      f"${PUBLIC_IPV4_HOUR}/h", ips * HOURS_PER_MONTH * PUBLIC_IPV4_HOUR))  # fmt: skip
    gb = aws.storage.expected_gb
    lines.append(Line("storage", "S3 Standard", f"{gb:g} GB", f"${S3_STANDARD_GB_MONTH}/GB-month",
                      gb * S3_STANDARD_GB_MONTH))  # fmt: skip
    lines.append(Line("storage", "KMS key", "1 key", f"${KMS_KEY_MONTH}/month", KMS_KEY_MONTH))
    lines.append(
        Line("monitoring", "CloudWatch alarms", "2 alarms", f"${ALARM_MONTH}/alarm-month", 2 * ALARM_MONTH)
    )
    train_job = training_job_cost(cfg, prices)
    lines.append(Line("jobs", f"SageMaker {tr.instance_type}{' spot' if tr.spot else ''}",
                      f"{tr.jobs_per_month:g} jobs x {tr.hours_per_job:g} h x {tr.instance_count}",
                      train_job["unit_price"], tr.jobs_per_month * train_job["usd"]))  # fmt: skip
    data_job = data_job_cost(cfg)
    lines.append(Line("jobs", f"Glue {dj.worker_type} x {dj.workers}", f"{dj.jobs_per_month:g} runs x "
                      f"{dj.hours_per_job:g} h", f"${GLUE_DPU_HOUR}/DPU-h", dj.jobs_per_month * data_job["usd"]))  # fmt: skip
    total = sum(line.monthly_usd for line in lines)
    return {
        "prices_as_of": PRICES_AS_OF,
        "lines": lines,
        "monthly_total_usd": total,
        "per_job": {"training": train_job, "data": data_job},
        "budget_usd": aws.budget.monthly_usd,
    }


def training_job_cost(cfg: NexusConfig, prices: dict[str, float] | None = None) -> dict:
    tr = cfg.aws.training
    p = _price(SAGEMAKER_TRAINING_HOURLY, prices or {}, tr.instance_type)
    factor = (1 - SPOT_SAVING) if tr.spot else 1.0
    usd = p * tr.instance_count * tr.hours_per_job * factor
    spot = f" x {1 - SPOT_SAVING:.0%} (spot)" if tr.spot else ""
    return {"usd": usd, "unit_price": f"${p}/h{spot}", "hours": tr.hours_per_job}


def data_job_cost(cfg: NexusConfig) -> dict:
    dj = cfg.aws.data_job
    dpus = GLUE_DPU_PER_WORKER[dj.worker_type] * dj.workers
    return {"usd": dpus * dj.hours_per_job * GLUE_DPU_HOUR, "dpus": dpus, "hours": dj.hours_per_job}
