"""Serving stack: ECS service behind an application load balancer, scaled on requests or CPU.

``aws.serving.capacity`` picks where tasks run: ``gpu`` puts them on EC2 GPU instances (ECS GPU AMI) in
an auto-scaling group that an ECS capacity provider grows and shrinks with the service; ``cpu`` uses
Fargate, which has no GPUs (the guide's mistake) and suits small models only. The service ignores
failing health checks for ``health_check_grace_seconds`` while a task downloads and loads the model.

Requests need an API key (``NEXUS_API_KEYS`` in the task, from Secrets Manager): the secret named by
``aws.serving.api_keys_secret_arn``, else one this stack generates. Only ``allow_anonymous: true``
deploys an endpoint without keys. The task execution role may read only that one secret.
"""

from __future__ import annotations

from troposphere import (
    Base64,
    GetAtt,
    Join,
    Output,
    Parameter,
    Ref,
    Sub,
    autoscaling,
    ec2,
    ecs,
    iam,
    logs,
    secretsmanager,
)
from troposphere import applicationautoscaling as aas
from troposphere import elasticloadbalancingv2 as elb

from nexus_llm.config import NexusConfig
from nexus_llm.deploy.names import ResourceNames
from nexus_llm.deploy.stacks.common import (
    cfn_value,
    checkov_skip,
    image_uri,
    import_list,
    import_value,
    log_group_name,
    new_template,
    policy,
    statement,
    tags,
)

CONCERN = "serving"
PORT = 8080
CONTAINER = "server"
GPU_AMI_PARAMETER = "/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id"
HOST_DISK_GB = 100
DEPLOY_MAX_PERCENT = 200
"""A rolling deployment starts the new tasks before it stops the old ones (minimum healthy 100 %)."""
HEALTH_CMD = (
    "python -c \"import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=4)\""
)


def build(cfg: NexusConfig, names: ResourceNames):
    sv = cfg.aws.serving
    t = new_template(names, CONCERN, f"ECS service on {sv.capacity.upper()} capacity behind an ALB")
    cluster = t.add_resource(
        ecs.Cluster(
            "Cluster",
            ClusterName=names.serving_cluster,
            ClusterSettings=[ecs.ClusterSetting(Name="containerInsights", Value="enabled")],
            Tags=tags(names, CONCERN),
        )
    )
    log_group = t.add_resource(
        logs.LogGroup(
            "LogGroup",
            LogGroupName=log_group_name(names, "serving"),
            RetentionInDays=cfg.aws.monitoring.log_retention_days,
            KmsKeyId=import_value(names, "KmsKeyArn"),
            Tags=tags(names, CONCERN),
        )
    )
    alb_sg, task_sg = _security_groups(t, cfg, names)
    alb = t.add_resource(_load_balancer(cfg, names, alb_sg))
    tg = t.add_resource(_target_group(names))
    listeners = _listeners(t, cfg, alb, tg)
    keys, read_keys = _api_keys(t, cfg, names)
    task = t.add_resource(_task_definition(cfg, names, log_group, keys))
    placement: dict = {"LaunchType": "FARGATE", "PlatformVersion": "LATEST"}
    # tasks start only once the execution role may read the keys
    depends = [*listeners, *([read_keys] if read_keys else [])]
    if sv.capacity == "gpu":
        provider, associations = _gpu_capacity(t, cfg, names, cluster)
        strategy = ecs.CapacityProviderStrategyItem(CapacityProvider=Ref(provider), Weight=1)
        placement = {"CapacityProviderStrategy": [strategy]}
        depends.append(associations)
    service = t.add_resource(
        ecs.Service(
            "Service",
            ServiceName=names.serving_service,
            Cluster=Ref(cluster),
            TaskDefinition=Ref(task),
            DesiredCount=sv.min_tasks,
            HealthCheckGracePeriodSeconds=sv.health_check_grace_seconds,
            NetworkConfiguration=ecs.NetworkConfiguration(
                AwsvpcConfiguration=ecs.AwsvpcConfiguration(
                    Subnets=import_list(names, "PrivateSubnets"),
                    SecurityGroups=[Ref(task_sg)],
                    AssignPublicIp="DISABLED",
                )
            ),
            LoadBalancers=[
                ecs.LoadBalancer(ContainerName=CONTAINER, ContainerPort=PORT, TargetGroupArn=Ref(tg))
            ],
            DeploymentConfiguration=ecs.DeploymentConfiguration(
                MinimumHealthyPercent=100,
                MaximumPercent=DEPLOY_MAX_PERCENT,
                DeploymentCircuitBreaker=ecs.DeploymentCircuitBreaker(Enable=True, Rollback=True),
            ),
            PropagateTags="SERVICE",
            EnableECSManagedTags=True,
            DependsOn=depends,
            Tags=tags(names, CONCERN),
            **placement,
        )
    )
    _autoscaling(t, cfg, names, cluster, service, alb, tg)
    scheme = "https" if sv.certificate_arn else "http"
    t.add_output(Output("ServiceUrl", Value=Sub(f"{scheme}://${{Dns}}", Dns=GetAtt(alb, "DNSName"))))
    t.add_output(Output("ClusterName", Value=Ref(cluster)))
    t.add_output(Output("ServiceName", Value=names.serving_service))
    t.add_output(Output("LogGroupName", Value=Ref(log_group)))
    if keys is not None:
        t.add_output(
            Output("ApiKeysSecretArn", Value=keys, Description="Secrets Manager secret with the API keys")
        )
    return t


def _api_keys(t, cfg: NexusConfig, names: ResourceNames):
    """(API-key secret ARN, the policy that lets the execution role read it); (None, None) with
    ``allow_anonymous``. The secret is the configured one, else one generated here.

    The execution role (IAM stack) gets read access to exactly this secret through a policy defined
    here, next to the secret, because a generated secret's ARN (random suffix) exists only once this
    stack creates it.
    """
    sv = cfg.aws.serving
    if sv.allow_anonymous:
        return None, None
    if sv.api_keys_secret_arn:
        arn = sv.api_keys_secret_arn
    else:
        secret = t.add_resource(
            secretsmanager.Secret(
                "ApiKeysSecret",
                Description=f"Nexus LLM {names.project}: API key(s) of the serving endpoint "
                "(NEXUS_API_KEYS, comma-separated); add keys by editing the value",
                # letters and digits only: no comma (the key separator) and nothing to escape in a header
                GenerateSecretString=secretsmanager.GenerateSecretString(
                    PasswordLength=48, ExcludePunctuation=True, IncludeSpace=False
                ),
                KmsKeyId=import_value(names, "KmsKeyArn"),
                Tags=tags(names, CONCERN),
            )
        )
        # No rotation schedule: rotating an API key needs its clients to change too, so people do it
        # (edit the value: keys are comma-separated, so old and new can overlap; then restart tasks).
        arn = Ref(secret)
    read = t.add_resource(
        iam.PolicyType(
            "ApiKeysReadPolicy",
            PolicyName=f"{names.project}-serve-api-keys",
            Roles=[names.role("serve-execution")],
            PolicyDocument=policy(statement(["secretsmanager:GetSecretValue"], [arn])),
        )
    )
    return arn, read


def _security_groups(t, cfg: NexusConfig, names: ResourceNames):
    sv = cfg.aws.serving
    ports = [443, 80] if sv.certificate_arn else [80]
    alb_sg = t.add_resource(
        ec2.SecurityGroup(
            "LoadBalancerSecurityGroup",
            GroupDescription=f"{names.project} load balancer: clients in, tasks out",
            VpcId=import_value(names, "VpcId"),
            SecurityGroupIngress=[_tcp(p, f"clients on {p}", CidrIp=sv.allowed_cidr) for p in ports],
            SecurityGroupEgress=[
                _tcp(PORT, "to serving tasks", CidrIp=import_value(names, "VpcCidr")),
            ],
            Tags=tags(names, CONCERN),
        )
    )
    if sv.allowed_cidr == "0.0.0.0/0":
        checkov_skip(
            alb_sg,
            (
                "CKV_AWS_260",
                "port 80 is the public entry of an internet-facing load balancer: it only redirects to "
                "HTTPS when aws.serving.certificate_arn is set (see the listener's CKV_AWS_2 note "
                "otherwise); narrow aws.serving.allowed_cidr to restrict clients",
            ),
        )
    task_sg = t.add_resource(
        ec2.SecurityGroup(
            "TaskSecurityGroup",
            GroupDescription=f"{names.project} serving tasks: load balancer in, HTTPS out",
            VpcId=import_value(names, "VpcId"),
            SecurityGroupIngress=[_tcp(PORT, "from the load balancer", SourceSecurityGroupId=Ref(alb_sg))],
            SecurityGroupEgress=[
                _tcp(443, "ECR, S3, Secrets Manager, CloudWatch over HTTPS", CidrIp="0.0.0.0/0")
            ],
            Tags=tags(names, CONCERN),
        )
    )
    return alb_sg, task_sg


def _tcp(port: int, description: str, **peer) -> ec2.SecurityGroupRule:
    """One TCP port to or from ``peer`` (``CidrIp=...`` or ``SourceSecurityGroupId=...``)."""
    return ec2.SecurityGroupRule(
        IpProtocol="tcp", FromPort=port, ToPort=port, Description=description, **peer
    )


def _load_balancer(cfg: NexusConfig, names: ResourceNames, sg) -> elb.LoadBalancer:
    attrs = {
        "access_logs.s3.enabled": "true",
        "access_logs.s3.bucket": cfn_value(names.logs_bucket),
        "access_logs.s3.prefix": "alb",
        "routing.http.drop_invalid_header_fields.enabled": "true",
        "idle_timeout.timeout_seconds": "300",  # long, streamed completions
        "deletion_protection.enabled": "false",
    }
    lb = elb.LoadBalancer(
        "LoadBalancer",
        Name=f"{names.project}-serve",
        Scheme="internet-facing",
        Type="application",
        Subnets=import_list(names, "PublicSubnets"),
        SecurityGroups=[Ref(sg)],
        LoadBalancerAttributes=[elb.LoadBalancerAttributes(Key=k, Value=v) for k, v in attrs.items()],
        Tags=tags(names, CONCERN),
    )
    # No deletion protection: `nexus aws destroy` must be able to delete the stack, and the ALB holds no
    # data. No WAF by default (a paid extra): requests other than /health need an API key (unless
    # aws.serving.allow_anonymous is set) and overload is shed with 429; attach a web ACL to this ALB
    # if you need one.
    return lb


def _target_group(names: ResourceNames) -> elb.TargetGroup:
    return elb.TargetGroup(
        "TargetGroup",
        Name=f"{names.project}-serve",
        TargetType="ip",
        Protocol="HTTP",
        Port=PORT,
        VpcId=import_value(names, "VpcId"),
        HealthCheckPath="/health",
        HealthCheckProtocol="HTTP",
        HealthCheckIntervalSeconds=15,
        HealthCheckTimeoutSeconds=5,
        HealthyThresholdCount=2,
        UnhealthyThresholdCount=3,
        Matcher=elb.Matcher(HttpCode="200"),
        TargetGroupAttributes=[
            elb.TargetGroupAttribute(Key="deregistration_delay.timeout_seconds", Value="60")
        ],
        Tags=tags(names, CONCERN),
    )


def _listeners(t, cfg: NexusConfig, alb, tg) -> list:
    cert = cfg.aws.serving.certificate_arn
    forward = [elb.Action(Type="forward", TargetGroupArn=Ref(tg))]
    if not cert:
        http = elb.Listener(
            "HttpListener", LoadBalancerArn=Ref(alb), Port=80, Protocol="HTTP", DefaultActions=forward
        )
        checkov_skip(
            http,
            (
                "CKV_AWS_2",
                "no aws.serving.certificate_arn is configured (nexus aws deploy warns); set one to get "
                "HTTPS on 443 with HTTP redirected to it, so API keys never cross the internet in clear",
            ),
            ("CKV_AWS_103", "TLS applies to the HTTPS listener, which needs aws.serving.certificate_arn"),
        )
        return [t.add_resource(http)]
    https = t.add_resource(
        elb.Listener(
            "HttpsListener",
            LoadBalancerArn=Ref(alb),
            Port=443,
            Protocol="HTTPS",
            SslPolicy="ELBSecurityPolicy-TLS13-1-2-2021-06",
            Certificates=[elb.Certificate(CertificateArn=cert)],
            DefaultActions=forward,
        )
    )
    redirect = elb.Action(
        Type="redirect",
        RedirectConfig=elb.RedirectConfig(Protocol="HTTPS", Port="443", StatusCode="HTTP_301"),
    )
    http = t.add_resource(
        elb.Listener(
            "HttpListener", LoadBalancerArn=Ref(alb), Port=80, Protocol="HTTP", DefaultActions=[redirect]
        )
    )
    return [https, http]


def _task_definition(cfg: NexusConfig, names: ResourceNames, log_group, keys) -> ecs.TaskDefinition:
    """The serving container; ``keys`` is the API-key secret's ARN (None: anonymous endpoint)."""
    sv = cfg.aws.serving
    env = {
        "NEXUS_MODEL_URI": sv.model_uri or cfn_value(names.model_uri()),
        "NEXUS_SERVICE_NAME": names.service_dimension,
        "AWS_REGION": Ref("AWS::Region"),
    }
    secrets = [] if keys is None else [ecs.Secret(Name="NEXUS_API_KEYS", ValueFrom=keys)]
    container = ecs.ContainerDefinition(
        Name=CONTAINER,
        Image=image_uri(names, "serve", sv.image_tag),
        Essential=True,
        PortMappings=[ecs.PortMapping(ContainerPort=PORT, Protocol="tcp")],
        Environment=[ecs.Environment(Name=k, Value=v) for k, v in env.items()],
        Secrets=secrets,
        ReadonlyRootFilesystem=True,
        Privileged=False,
        MountPoints=[
            ecs.MountPoint(SourceVolume="model", ContainerPath="/opt/ml/model", ReadOnly=False),
            ecs.MountPoint(SourceVolume="tmp", ContainerPath="/tmp", ReadOnly=False),
        ],
        HealthCheck=ecs.HealthCheck(
            Command=["CMD-SHELL", HEALTH_CMD], Interval=30, Timeout=5, Retries=3, StartPeriod=300
        ),
        LogConfiguration=ecs.LogConfiguration(
            LogDriver="awslogs",
            Options={
                "awslogs-group": Ref(log_group),
                "awslogs-region": Ref("AWS::Region"),
                "awslogs-stream-prefix": "serve",
            },
        ),
        StopTimeout=60,
    )
    extra: dict = {
        "RequiresCompatibilities": ["FARGATE"],
        "RuntimePlatform": ecs.RuntimePlatform(OperatingSystemFamily="LINUX", CpuArchitecture="X86_64"),
        "EphemeralStorage": ecs.EphemeralStorage(SizeInGiB=50),
    }
    if sv.capacity == "gpu":
        container.ResourceRequirements = [ecs.ResourceRequirement(Type="GPU", Value=str(sv.gpus_per_task))]
        extra = {"RequiresCompatibilities": ["EC2"]}
    return ecs.TaskDefinition(
        "TaskDefinition",
        Family=f"{names.project}-serve",
        NetworkMode="awsvpc",
        Cpu=str(sv.cpu),
        Memory=str(sv.memory_mb),
        ExecutionRoleArn=import_value(names, "ServeExecutionRoleArn"),
        TaskRoleArn=import_value(names, "ServeTaskRoleArn"),
        ContainerDefinitions=[container],
        Volumes=[ecs.Volume(Name="model"), ecs.Volume(Name="tmp")],
        Tags=tags(names, CONCERN),
        **extra,
    )


def max_gpu_hosts(cfg: NexusConfig) -> int:
    """Upper bound of the GPU auto-scaling group: room for a rolling deployment at full scale.

    One task runs per GPU host, and a deployment keeps every old task until its replacement is healthy
    (MinimumHealthyPercent 100, MaximumPercent 200), so at ``max_tasks`` it briefly needs twice as many
    hosts; with MaxSize == max_tasks it would wait for capacity that can never come. The capacity
    provider launches only the hosts that tasks need, so the higher bound costs nothing until a
    deployment uses it (then ``nexus aws cost`` shows the price of max scale). The other choice,
    MinimumHealthyPercent 50 / MaximumPercent 100, would halve serving capacity during every deploy.
    """
    return cfg.aws.serving.max_tasks * DEPLOY_MAX_PERCENT // 100


def _gpu_capacity(t, cfg: NexusConfig, names: ResourceNames, cluster):
    """EC2 GPU hosts: launch template + auto-scaling group + capacity provider managed by ECS."""
    sv = cfg.aws.serving
    ami = t.add_parameter(
        Parameter(
            "GpuAmiId",
            Type="AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>",
            Default=GPU_AMI_PARAMETER,
            Description="ECS-optimised GPU AMI (Amazon Linux 2023, NVIDIA driver and container toolkit)",
        )
    )
    host_sg = t.add_resource(
        ec2.SecurityGroup(
            "HostSecurityGroup",
            GroupDescription=f"{names.project} GPU hosts: no inbound, HTTPS out (ECS, ECR)",
            VpcId=import_value(names, "VpcId"),
            SecurityGroupEgress=[_tcp(443, "ECS agent, ECR, S3 over HTTPS", CidrIp="0.0.0.0/0")],
            Tags=tags(names, CONCERN),
        )
    )
    user_data = Sub(
        "#!/bin/bash\necho ECS_CLUSTER=${Cluster} >> /etc/ecs/ecs.config\n"
        "echo ECS_ENABLE_GPU_SUPPORT=true >> /etc/ecs/ecs.config\n"
        # awslogs on EC2 would otherwise use the instance role; the execution role holds the log rights
        "echo ECS_ENABLE_AWSLOGS_EXECUTIONROLE_OVERRIDE=true >> /etc/ecs/ecs.config\n",
        Cluster=Ref(cluster),
    )
    disk = ec2.EBSBlockDevice(
        VolumeSize=HOST_DISK_GB, VolumeType="gp3", Encrypted=True, DeleteOnTermination=True
    )
    template = t.add_resource(
        ec2.LaunchTemplate(
            "GpuLaunchTemplate",
            LaunchTemplateName=f"{names.project}-serve-gpu",
            LaunchTemplateData=ec2.LaunchTemplateData(
                ImageId=Ref(ami),
                InstanceType=sv.instance_type,
                IamInstanceProfile=ec2.IamInstanceProfile(Arn=import_value(names, "InstanceProfileArn")),
                SecurityGroupIds=[Ref(host_sg)],
                MetadataOptions=ec2.MetadataOptions(
                    HttpTokens="required", HttpPutResponseHopLimit=1, HttpEndpoint="enabled"
                ),
                BlockDeviceMappings=[ec2.LaunchTemplateBlockDeviceMapping(DeviceName="/dev/xvda", Ebs=disk)],
                Monitoring=ec2.Monitoring(Enabled=True),
                UserData=Base64(user_data),
            ),
        )
    )
    asg = t.add_resource(
        autoscaling.AutoScalingGroup(
            "GpuAutoScalingGroup",
            AutoScalingGroupName=f"{names.project}-serve-gpu",
            MinSize="0",
            MaxSize=str(max_gpu_hosts(cfg)),
            VPCZoneIdentifier=import_list(names, "PrivateSubnets"),
            LaunchTemplate=autoscaling.LaunchTemplateSpecification(
                LaunchTemplateId=Ref(template), Version=GetAtt(template, "LatestVersionNumber")
            ),
            NewInstancesProtectedFromScaleIn=True,
            Tags=autoscaling.Tags(Project=names.project, Name=f"{names.project}-serve-gpu"),
        )
    )
    provider = t.add_resource(
        ecs.CapacityProvider(
            "GpuCapacityProvider",
            AutoScalingGroupProvider=ecs.AutoScalingGroupProvider(
                AutoScalingGroupArn=Ref(asg),
                ManagedScaling=ecs.ManagedScaling(Status="ENABLED", TargetCapacity=100),
                ManagedTerminationProtection="ENABLED",
            ),
            Tags=tags(names, CONCERN),
        )
    )
    default = ecs.CapacityProviderStrategy(CapacityProvider=Ref(provider), Weight=1)
    associations = t.add_resource(
        ecs.ClusterCapacityProviderAssociations(
            "CapacityProviderAssociations",
            Cluster=Ref(cluster),
            CapacityProviders=[Ref(provider)],
            DefaultCapacityProviderStrategy=[default],
        )
    )
    return provider, associations


def _autoscaling(t, cfg: NexusConfig, names: ResourceNames, cluster, service, alb, tg) -> None:
    sv = cfg.aws.serving
    target = t.add_resource(
        aas.ScalableTarget(
            "ScalableTarget",
            ServiceNamespace="ecs",
            ScalableDimension="ecs:service:DesiredCount",
            ResourceId=Join("/", ["service", Ref(cluster), GetAtt(service, "Name")]),
            MinCapacity=sv.min_tasks,
            MaxCapacity=sv.max_tasks,
        )
    )
    if sv.scale_on == "requests":
        metric = aas.PredefinedMetricSpecification(
            PredefinedMetricType="ALBRequestCountPerTarget",
            ResourceLabel=Join("/", [GetAtt(alb, "LoadBalancerFullName"), GetAtt(tg, "TargetGroupFullName")]),
        )
        value = float(sv.target_requests_per_task)
    else:
        metric = aas.PredefinedMetricSpecification(PredefinedMetricType="ECSServiceAverageCPUUtilization")
        value = float(sv.target_cpu_percent)
    t.add_resource(
        aas.ScalingPolicy(
            "ScalingPolicy",
            PolicyName=f"{names.project}-serve-{sv.scale_on}",
            PolicyType="TargetTrackingScaling",
            ScalingTargetId=Ref(target),
            TargetTrackingScalingPolicyConfiguration=aas.TargetTrackingScalingPolicyConfiguration(
                PredefinedMetricSpecification=metric,
                TargetValue=value,
                ScaleInCooldown=300,
                ScaleOutCooldown=60,
            ),
        )
    )
