"""Storage stack: the KMS key, the data / models / logs buckets, the ECR repositories.

Buckets and the key are retained when the stack is deleted (``DeletionPolicy: Retain``): data, models
and the key that decrypts them must never disappear with a ``nexus aws destroy``.
"""

from __future__ import annotations

import json
from typing import Any

from troposphere import GetAtt, Ref, Sub, ecr, glue, kms, s3

from nexus_llm.config import NexusConfig
from nexus_llm.deploy.names import ResourceNames
from nexus_llm.deploy.stacks.common import (
    cfn_value,
    checkov_skip,
    deny_insecure_transport,
    export,
    new_template,
    policy,
    service_principal,
    tags,
)

CONCERN = "storage"

# Elastic Load Balancing's log-delivery accounts for regions older than August 2022; newer regions use
# the service principal, which the policy grants too. (AWS docs: "Enable access logs for your ALB".)
ELB_LOG_ACCOUNTS = {
    "us-east-1": "127311923021",
    "us-east-2": "033677994240",
    "us-west-1": "027434742980",
    "us-west-2": "797873946194",
    "eu-west-1": "156460612806",
    "eu-west-2": "652711504416",
    "eu-central-1": "054676820928",
    "ap-northeast-1": "582318560864",
    "ap-southeast-1": "114774131450",
    "ap-southeast-2": "783225319266",
}

_KMS_ADMIN = [
    *("kms:Create*", "kms:Describe*", "kms:Enable*", "kms:List*", "kms:Put*", "kms:Update*"),
    *("kms:Revoke*", "kms:Disable*", "kms:Get*", "kms:Delete*", "kms:TagResource", "kms:UntagResource"),
    *("kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion", "kms:RotateKeyOnDemand"),
]
_KMS_USE = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"]


def build(cfg: NexusConfig, names: ResourceNames):
    t = new_template(names, CONCERN, "KMS key, data/models/logs buckets, ECR repositories")
    key = t.add_resource(_key(names))
    t.add_resource(kms.Alias("KeyAlias", AliasName=f"alias/{names.project}", TargetKeyId=Ref(key)))
    logs = t.add_resource(_logs_bucket(cfg, names))
    t.add_resource(_logs_bucket_policy(names, logs))
    for kind in ("data", "models"):
        bucket = t.add_resource(_kms_bucket(cfg, names, kind, key))
        t.add_resource(
            s3.BucketPolicy(
                f"{kind.title()}BucketPolicy",
                Bucket=Ref(bucket),
                PolicyDocument=policy(deny_insecure_transport(GetAtt(bucket, "Arn"))),
            )
        )
    for kind in ("train", "serve"):
        t.add_resource(_repository(names, kind, key))
    t.add_resource(_glue_security(names, key))
    export(t, names, "KmsKeyArn", GetAtt(key, "Arn"), "KMS key for buckets, logs, topics, images")
    for kind in ("data", "models", "logs"):
        export(t, names, f"{kind.title()}Bucket", cfn_value(names.bucket(kind)), f"the {kind} bucket")
    export(t, names, "GlueSecurityConfiguration", f"{names.project}-glue", "Glue encryption settings")
    return t


def _key(names: ResourceNames) -> kms.Key:
    account_root = Sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:root")
    same_account = {"StringEquals": {"aws:SourceAccount": Sub("${AWS::AccountId}")}}
    log_groups = Sub("arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:*")
    logs_use = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    alert_publishers = {"Service": ["cloudwatch.amazonaws.com", "budgets.amazonaws.com"]}
    doc = policy(
        # Key administration by the account (IAM policies decide who); enumerated, never kms:*.
        _grant("AccountAdmin", {"AWS": account_root}, _KMS_ADMIN + _KMS_USE, "*"),
        # CloudWatch Logs encrypts the serving and Glue log groups with this key.
        _grant(
            "CloudWatchLogs",
            service_principal(Sub("logs.${AWS::Region}.amazonaws.com")),
            logs_use,
            "*",
            {"ArnLike": {"kms:EncryptionContext:aws:logs:arn": log_groups}},
        ),
        # Alarms and budgets publish to the encrypted alerts topic.
        _grant(
            "AlertPublishers", alert_publishers, ["kms:Decrypt", "kms:GenerateDataKey*"], "*", same_account
        ),
    )
    return kms.Key(
        "Key",
        Description=f"Nexus LLM {names.project}: data, models, logs, alerts, images",
        EnableKeyRotation=True,
        KeyPolicy=doc,
        DeletionPolicy="Retain",
        UpdateReplacePolicy="Retain",
        # no Tags here: the stack's own tags propagate to the key (and moto mis-parses key tags)
    )


def _common_bucket_props(names: ResourceNames, kind: str) -> dict[str, Any]:
    return {
        "BucketName": cfn_value(names.bucket(kind)),
        "PublicAccessBlockConfiguration": s3.PublicAccessBlockConfiguration(
            BlockPublicAcls=True, BlockPublicPolicy=True, IgnorePublicAcls=True, RestrictPublicBuckets=True
        ),
        "VersioningConfiguration": s3.VersioningConfiguration(Status="Enabled"),
        "OwnershipControls": s3.OwnershipControls(
            Rules=[s3.OwnershipControlsRule(ObjectOwnership="BucketOwnerEnforced")]
        ),
        "DeletionPolicy": "Retain",
        "UpdateReplacePolicy": "Retain",
        "Tags": tags(names, CONCERN),
    }


def _lifecycle(cfg: NexusConfig, *extra: s3.LifecycleRule) -> s3.LifecycleConfiguration:
    st = cfg.aws.storage
    return s3.LifecycleConfiguration(
        Rules=[
            s3.LifecycleRule(
                Id="tidy",
                Status="Enabled",
                AbortIncompleteMultipartUpload=s3.AbortIncompleteMultipartUpload(DaysAfterInitiation=7),
                NoncurrentVersionExpiration=s3.NoncurrentVersionExpiration(
                    NoncurrentDays=st.noncurrent_version_days
                ),
                ExpiredObjectDeleteMarker=True,
            ),
            *extra,
        ]
    )


def _kms_bucket(cfg: NexusConfig, names: ResourceNames, kind: str, key: kms.Key) -> s3.Bucket:
    st = cfg.aws.storage
    rules = [
        s3.LifecycleRule(
            Id="infrequent-access",
            Status="Enabled",
            Transitions=[
                s3.LifecycleRuleTransition(
                    StorageClass="STANDARD_IA", TransitionInDays=st.infrequent_access_days
                )
            ],
        )
    ]
    if kind == "data":
        rules.append(s3.LifecycleRule(Id="tmp", Status="Enabled", Prefix="tmp/", ExpirationInDays=7))
    return s3.Bucket(
        f"{kind.title()}Bucket",
        BucketEncryption=s3.BucketEncryption(
            ServerSideEncryptionConfiguration=[
                s3.ServerSideEncryptionRule(
                    ServerSideEncryptionByDefault=s3.ServerSideEncryptionByDefault(
                        SSEAlgorithm="aws:kms", KMSMasterKeyID=GetAtt(key, "Arn")
                    ),
                    BucketKeyEnabled=True,
                )
            ]
        ),
        LoggingConfiguration=s3.LoggingConfiguration(
            DestinationBucketName=cfn_value(names.logs_bucket),
            LogFilePrefix=cfn_value(f"s3-access/{names.bucket(kind)}/"),
        ),
        LifecycleConfiguration=_lifecycle(cfg, *rules),
        **_common_bucket_props(names, kind),
    )


def _logs_bucket(cfg: NexusConfig, names: ResourceNames) -> s3.Bucket:
    bucket = s3.Bucket(
        "LogsBucket",
        # S3 server access logs and ALB access logs can only be delivered to SSE-S3 buckets.
        BucketEncryption=s3.BucketEncryption(
            ServerSideEncryptionConfiguration=[
                s3.ServerSideEncryptionRule(
                    ServerSideEncryptionByDefault=s3.ServerSideEncryptionByDefault(SSEAlgorithm="AES256")
                )
            ]
        ),
        LifecycleConfiguration=_lifecycle(
            cfg,
            s3.LifecycleRule(Id="expire", Status="Enabled", ExpirationInDays=cfg.aws.storage.log_expiry_days),
        ),
        **_common_bucket_props(names, "logs"),
    )
    return checkov_skip(
        bucket,
        ("CKV_AWS_18", "this is the access-log destination; logging it into itself would loop"),
    )


def _grant(
    sid: str, principal: Any, actions: list[str], resource: Any, condition: dict | None = None
) -> dict:
    """An Allow statement for a resource policy (key or bucket), which names its principal."""
    stmt = {"Sid": sid, "Effect": "Allow", "Principal": principal, "Action": actions, "Resource": resource}
    if condition:
        stmt["Condition"] = condition
    return stmt


def _logs_bucket_policy(names: ResourceNames, bucket: s3.Bucket) -> s3.BucketPolicy:
    arn = GetAtt(bucket, "Arn")
    same_account = {"StringEquals": {"aws:SourceAccount": Sub("${AWS::AccountId}")}}
    alb_prefix = Sub("${Arn}/alb/AWSLogs/${AWS::AccountId}/*", Arn=arn)
    alb_principals: list[Any] = [{"Service": "logdelivery.elasticloadbalancing.amazonaws.com"}]
    if names.region in ELB_LOG_ACCOUNTS:
        alb_principals.append({"AWS": f"arn:aws:iam::{ELB_LOG_ACCOUNTS[names.region]}:root"})
    s3_logging = service_principal("logging.s3.amazonaws.com")
    log_delivery = service_principal("delivery.logs.amazonaws.com")
    flow_logs = Sub("${Arn}/AWSLogs/${AWS::AccountId}/*", Arn=arn)
    access_logs = Sub("${Arn}/s3-access/*", Arn=arn)
    statements = [
        deny_insecure_transport(arn),
        _grant("S3AccessLogs", s3_logging, ["s3:PutObject"], access_logs, same_account),
        _grant("VpcFlowLogs", log_delivery, ["s3:PutObject"], flow_logs, same_account),
        _grant("VpcFlowLogsAcl", log_delivery, ["s3:GetBucketAcl"], arn, same_account),
    ]
    statements += [
        _grant(f"AlbAccessLogs{i}", p, ["s3:PutObject"], alb_prefix) for i, p in enumerate(alb_principals)
    ]
    return s3.BucketPolicy("LogsBucketPolicy", Bucket=Ref(bucket), PolicyDocument=policy(*statements))


def _repository(names: ResourceNames, kind: str, key: kms.Key) -> ecr.Repository:
    keep_last = {
        "rules": [
            {
                "rulePriority": 1,
                "description": "keep the 20 newest images",
                "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 20},
                "action": {"type": "expire"},
            }
        ]
    }
    return ecr.Repository(
        f"{kind.title()}Repository",
        RepositoryName=names.repository(kind),
        ImageTagMutability="IMMUTABLE",
        ImageScanningConfiguration=ecr.ImageScanningConfiguration(ScanOnPush=True),
        EncryptionConfiguration=ecr.EncryptionConfiguration(EncryptionType="KMS", KmsKey=GetAtt(key, "Arn")),
        LifecyclePolicy=ecr.LifecyclePolicy(LifecyclePolicyText=json.dumps(keep_last)),
        DeletionPolicy="Retain",
        UpdateReplacePolicy="Retain",
        Tags=tags(names, CONCERN),
    )


def _glue_security(names: ResourceNames, key: kms.Key) -> glue.SecurityConfiguration:
    """Glue jobs write curated data, logs and bookmarks encrypted with the project key."""
    key_arn = GetAtt(key, "Arn")
    return glue.SecurityConfiguration(
        "GlueSecurityConfiguration",
        Name=f"{names.project}-glue",
        EncryptionConfiguration=glue.EncryptionConfiguration(
            S3Encryptions=[glue.S3Encryption(S3EncryptionMode="SSE-KMS", KmsKeyArn=key_arn)],
            CloudWatchEncryption=glue.CloudWatchEncryption(
                CloudWatchEncryptionMode="SSE-KMS", KmsKeyArn=key_arn
            ),
            JobBookmarksEncryption=glue.JobBookmarksEncryption(
                JobBookmarksEncryptionMode="CSE-KMS", KmsKeyArn=key_arn
            ),
        ),
    )
