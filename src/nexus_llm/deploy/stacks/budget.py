"""Budget stack: a monthly cost budget that alerts the topic (and an optional e-mail) at 80 % and 100 %."""

from __future__ import annotations

from troposphere import budgets

from nexus_llm.config import NexusConfig
from nexus_llm.deploy.names import ResourceNames
from nexus_llm.deploy.stacks.common import import_value, new_template

CONCERN = "budget"
THRESHOLDS_PERCENT = (80.0, 100.0)


def build(cfg: NexusConfig, names: ResourceNames):
    b = cfg.aws.budget
    t = new_template(names, CONCERN, f"monthly budget of {b.monthly_usd:g} USD")
    subscribers = [budgets.Subscriber(SubscriptionType="SNS", Address=import_value(names, "AlertsTopicArn"))]
    if b.email:
        subscribers.append(budgets.Subscriber(SubscriptionType="EMAIL", Address=b.email))
    t.add_resource(
        budgets.Budget(
            "MonthlyBudget",
            Budget=budgets.BudgetData(
                BudgetName=f"{names.project}-monthly",
                BudgetType="COST",
                TimeUnit="MONTHLY",
                BudgetLimit=budgets.Spend(Amount=b.monthly_usd, Unit="USD"),
            ),
            NotificationsWithSubscribers=[
                budgets.NotificationWithSubscribers(
                    Notification=budgets.Notification(
                        NotificationType="ACTUAL",
                        ComparisonOperator="GREATER_THAN",
                        Threshold=pct,
                        ThresholdType="PERCENTAGE",
                    ),
                    Subscribers=subscribers,
                )
                for pct in THRESHOLDS_PERCENT
            ],
        )
    )
    return t
