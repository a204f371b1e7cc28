"""Draw docs/img/aws-architecture.png (the AWS deployment of `nexus aws deploy`) with matplotlib.

    .venv/bin/python docs/img/aws-architecture.py

The PNG is committed so that nothing needs this script (or a display) to read the docs.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import FancyBboxPatch

OUT = Path(__file__).with_name("aws-architecture.png")
COLORS = {
    "storage": "#e8f3e8",
    "compute": "#fff1dc",
    "network": "#e6eefb",
    "monitor": "#fbe7ec",
    "control": "#eeeeee",
    "security": "#f3eafb",
}


def box(ax, x, y, w, h, title, lines=(), kind="compute", fontsize=9):
    ax.add_patch(
        FancyBboxPatch(
            (x, y),
            w,
            h,
            boxstyle="round,pad=0.02,rounding_size=0.08",
            facecolor=COLORS[kind],
            edgecolor="#555555",
            linewidth=1.1,
        )
    )
    ax.text(x + w / 2, y + h - 0.17, title, ha="center", va="top", fontsize=fontsize, fontweight="bold")
    for i, line in enumerate(lines):
        ax.text(x + w / 2, y + h - 0.45 - i * 0.24, line, ha="center", va="top", fontsize=fontsize - 1.5)
    return (x, y, w, h)


def zone(ax, x, y, w, h, label, color):
    ax.add_patch(
        FancyBboxPatch(
            (x, y),
            w,
            h,
            boxstyle="round,pad=0.02,rounding_size=0.15",
            facecolor="none",
            edgecolor=color,
            linewidth=1.4,
            linestyle="--",
        )
    )
    ax.text(x + 0.12, y + h - 0.12, label, ha="left", va="top", fontsize=8.5, color=color, fontstyle="italic")


def arrow(ax, a, b, label="", side="right", color="#333333", style="-|>", rad=0.0):
    (ax_, ay_), (bx_, by_) = a, b
    ax.annotate(
        "",
        xy=(bx_, by_),
        xytext=(ax_, ay_),
        arrowprops={"arrowstyle": style, "color": color, "lw": 1.2, "connectionstyle": f"arc3,rad={rad}"},
    )
    if label:
        mx, my = (ax_ + bx_) / 2, (ay_ + by_) / 2
        ax.text(
            mx + (0.08 if side == "right" else -0.08),
            my,
            label,
            fontsize=7.5,
            color=color,
            ha="left" if side == "right" else "right",
            va="center",
        )


def draw() -> None:
    fig, ax = plt.subplots(figsize=(15, 9.2))
    ax.set_xlim(0, 15)
    ax.set_ylim(0, 9.2)
    ax.axis("off")
    ax.text(
        0.2,
        9.0,
        "Nexus LLM on AWS  ·  `nexus aws deploy` (6 CloudFormation stacks from nexus.yaml)",
        fontsize=13,
        fontweight="bold",
        va="top",
    )

    # control plane
    box(
        ax,
        0.3,
        7.2,
        2.6,
        1.2,
        "nexus aws (boto3)",
        ["render · deploy · destroy", "submit-data-job · submit-train-job", "status · cost"],
        "control",
    )
    box(
        ax,
        3.5,
        7.2,
        3.2,
        1.2,
        "CloudFormation",
        ["storage → network → iam →", "serving → monitoring → budget"],
        "control",
    )
    arrow(ax, (2.9, 7.8), (3.5, 7.8), "")

    # storage stack
    zone(ax, 0.2, 3.0, 3.0, 3.9, "storage stack", "#2e7d32")
    box(
        ax,
        0.4,
        5.2,
        2.6,
        1.3,
        "S3 data bucket",
        ["raw/ · curated/ · tokens/", "jobs/ (code, configs) · tmp/"],
        "storage",
    )
    box(
        ax,
        0.4,
        3.7,
        2.6,
        1.3,
        "S3 models bucket",
        ["checkpoints/ · training/", "models/ (served)"],
        "storage",
    )
    ax.text(
        0.45,
        3.25,
        "SSE-KMS · versioned · TLS-only\nblock public access · lifecycle",
        fontsize=7.5,
        va="center",
    )

    # jobs
    box(ax, 3.9, 5.3, 2.6, 1.2, "AWS Glue 5.0 (Spark)", ["data curation job", "G.1X x N workers"], "compute")
    box(
        ax,
        3.9,
        3.7,
        2.6,
        1.3,
        "SageMaker training",
        ["train image (ECR)", "managed spot + checkpoints"],
        "compute",
    )
    arrow(ax, (3.0, 6.1), (3.9, 6.1), "", color="#2e7d32")
    ax.text(3.05, 6.25, "raw/", fontsize=7.5, color="#2e7d32")
    arrow(ax, (3.9, 5.6), (3.0, 5.6), "", color="#2e7d32")
    ax.text(3.05, 5.72, "curated/", fontsize=7.5, color="#2e7d32")
    arrow(ax, (3.0, 5.35), (3.9, 4.6), "tokens/", "right", "#2e7d32")
    arrow(ax, (3.9, 4.05), (3.0, 4.05), "model.tar.gz,\ncheckpoints", "left", "#2e7d32")
    arrow(ax, (1.6, 7.2), (1.6, 6.5), "upload", "right", "#777777")

    # network + serving
    zone(ax, 7.0, 2.6, 5.3, 4.5, "", "#1565c0")
    ax.text(
        7.1,
        2.75,
        "network stack: VPC, 2 AZs (public + private subnets)",
        fontsize=8.5,
        color="#1565c0",
        fontstyle="italic",
    )
    box(
        ax,
        7.3,
        5.5,
        2.2,
        1.1,
        "Application LB",
        ["HTTPS 443 (cert) / HTTP 80", "health: GET /health"],
        "network",
    )
    box(ax, 7.3, 3.0, 2.2, 1.0, "NAT gateway", ["+ S3 gateway endpoint"], "network")
    box(ax, 7.3, 4.3, 2.2, 0.95, "Secrets Manager", ["API key (generated)", "→ NEXUS_API_KEYS"], "security")
    arrow(ax, (9.5, 4.75), (9.9, 4.75), "")
    box(
        ax,
        9.9,
        4.2,
        2.2,
        2.4,
        "ECS service",
        [
            "`nexus serve` on :8080",
            "GPU: EC2 g5 capacity",
            "provider (or Fargate CPU)",
            "2–10 tasks, autoscaled",
            "on requests or CPU",
            "grace period: model load",
        ],
        "compute",
    )
    arrow(ax, (9.5, 6.05), (9.9, 6.05), "")
    arrow(ax, (11.0, 4.2), (9.5, 3.5), "ECR pull, S3, logs", "right", "#1565c0", rad=-0.2)
    arrow(ax, (3.0, 3.85), (9.9, 4.35), "", color="#2e7d32", rad=0.2)
    ax.text(4.2, 3.2, "models/ → NEXUS_MODEL_URI, fetched when a task starts", fontsize=7.5, color="#2e7d32")
    box(ax, 7.4, 7.45, 2.0, 0.9, "API clients", ["OpenAI SDK · /generate"], "control")
    arrow(ax, (8.4, 7.45), (8.4, 6.6), "")
    ax.text(8.5, 7.25, "API key (HTTPS with a certificate)", fontsize=7.5, va="center")

    # monitoring + budget
    zone(ax, 12.6, 2.6, 2.2, 6.0, "monitoring + budget", "#ad1457")
    box(
        ax,
        12.75,
        6.2,
        1.9,
        1.9,
        "CloudWatch",
        ["EMF metrics", "NexusLLM/API", "ResponseTime", "TokensGenerated", "ErrorCount"],
        "monitor",
    )
    box(ax, 12.75, 4.55, 1.9, 1.35, "Alarms", ["avg RT > 5 s, 2x5 min", "errors > 5 / 5 min"], "monitor")
    box(ax, 12.75, 3.4, 1.9, 0.9, "SNS alerts", ["KMS-encrypted"], "monitor")
    box(ax, 12.75, 2.75, 1.9, 0.55, "Budget 80 % / 100 %", [], "monitor", fontsize=8)
    arrow(ax, (12.1, 5.8), (12.75, 7.0), "", color="#ad1457")
    ax.text(12.05, 6.85, "EMF lines on stdout (awslogs)", fontsize=7.5, color="#ad1457", ha="right")
    arrow(ax, (13.7, 6.2), (13.7, 5.9), "")
    arrow(ax, (13.7, 4.55), (13.7, 4.3), "")
    arrow(ax, (13.1, 3.3), (13.1, 3.4), "")

    # security
    zone(ax, 0.2, 0.25, 14.6, 2.1, "iam + storage stacks: security", "#6a1b9a")
    box(
        ax,
        0.5,
        0.5,
        3.3,
        1.5,
        "KMS key (rotated)",
        ["buckets · log groups · SNS", "ECR images · Glue security config"],
        "security",
    )
    box(
        ax,
        4.1,
        0.5,
        5.2,
        1.5,
        "IAM roles, least privilege",
        [
            "training · glue · serve task · serve execution · GPU host",
            "S3 limited to each role's prefixes; own logs, metrics,",
            "ECR repository, KMS key; no *FullAccess, no service:*",
        ],
        "security",
    )
    box(ax, 9.6, 0.5, 2.4, 1.5, "ECR", ["nexus/train", "nexus/serve", "immutable tags, scan"], "security")
    box(ax, 12.3, 0.5, 2.3, 1.5, "S3 logs bucket", ["access logs · ALB logs", "VPC flow logs"], "security")
    arrow(ax, (5.1, 7.2), (5.1, 6.5), "", color="#777777")
    arrow(ax, (6.7, 7.6), (9.9, 6.6), "", color="#777777", rad=-0.15)

    fig.savefig(OUT, dpi=110, bbox_inches="tight", facecolor="white")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    draw()
