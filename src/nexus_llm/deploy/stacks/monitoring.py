"""Monitoring stack: the guide's two alarms on the server's EMF metrics, sent to an encrypted topic.

The server writes one Embedded Metric Format line per request to stdout; the ``awslogs`` driver ships
it to CloudWatch Logs, which turns it into metrics in namespace ``NexusLLM/API`` with the dimension
``Service`` = ``NEXUS_SERVICE_NAME`` (set by the serving task definition to the project name).
"""

from __future__ import annotations

from troposphere import Ref, Sub, cloudwatch, sns

from nexus_llm.config import NexusConfig
from nexus_llm.deploy.names import METRICS_DIMENSION, METRICS_NAMESPACE, ResourceNames
from nexus_llm.deploy.stacks.common import export, import_value, new_template, policy, tags

CONCERN = "monitoring"
PERIOD_S = 300


def alarm_rules(cfg: NexusConfig) -> dict[str, dict]:
    """The alarm rules (the guide's, thresholds from the config), kept as data so tests can pin them."""
    mon = cfg.aws.monitoring
    above = {"Period": PERIOD_S, "ComparisonOperator": "GreaterThanThreshold"}
    return {
        "ResponseTimeAlarm": {
            **above,
            "MetricName": "ResponseTime",
            "Statistic": "Average",
            "EvaluationPeriods": 2,
            "Threshold": mon.response_time_threshold_s,
            "description": "average response time above {t} s for 2 consecutive 5-minute periods",
        },
        "ErrorCountAlarm": {
            **above,
            "MetricName": "ErrorCount",
            "Statistic": "Sum",
            "EvaluationPeriods": 1,
            "Threshold": mon.error_count_threshold,
            "description": "more than {t} errors in 5 minutes",
        },
    }


def build(cfg: NexusConfig, names: ResourceNames):
    t = new_template(names, CONCERN, "alerts topic and alarms on the serving metrics")
    topic = t.add_resource(
        sns.Topic(
            "AlertsTopic",
            TopicName=f"{names.project}-alerts",
            KmsMasterKeyId=import_value(names, "KmsKeyArn"),
            Tags=tags(names, CONCERN),
        )
    )
    t.add_resource(
        sns.TopicPolicy(
            "AlertsTopicPolicy",
            Topics=[Ref(topic)],
            PolicyDocument=policy(
                {
                    "Sid": "AlarmsAndBudgetsPublish",
                    "Effect": "Allow",
                    "Principal": {"Service": ["cloudwatch.amazonaws.com", "budgets.amazonaws.com"]},
                    "Action": ["sns:Publish"],
                    "Resource": Ref(topic),
                    "Condition": {"StringEquals": {"aws:SourceAccount": Sub("${AWS::AccountId}")}},
                }
            ),
        )
    )
    if cfg.aws.monitoring.alarm_email:
        t.add_resource(
            sns.SubscriptionResource(
                "AlertsEmail", TopicArn=Ref(topic), Protocol="email", Endpoint=cfg.aws.monitoring.alarm_email
            )
        )
    for logical, rule in alarm_rules(cfg).items():
        t.add_resource(
            cloudwatch.Alarm(
                logical,
                AlarmName=f"{names.project}-{rule['MetricName']}",
                AlarmDescription=rule["description"].format(t=rule["Threshold"]),
                Namespace=METRICS_NAMESPACE,
                MetricName=rule["MetricName"],
                Dimensions=[
                    cloudwatch.MetricDimension(Name=METRICS_DIMENSION, Value=names.service_dimension)
                ],
                Statistic=rule["Statistic"],
                Period=rule["Period"],
                EvaluationPeriods=rule["EvaluationPeriods"],
                Threshold=rule["Threshold"],
                ComparisonOperator=rule["ComparisonOperator"],
                TreatMissingData="notBreaching",
                AlarmActions=[Ref(topic)],
                OKActions=[Ref(topic)],
            )
        )
    export(t, names, "AlertsTopicArn", Ref(topic), "SNS topic for alarms and budget alerts")
    return t
