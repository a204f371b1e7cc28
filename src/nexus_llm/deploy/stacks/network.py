"""Network stack: a VPC over two availability zones, public subnets for the load balancer and NAT,
private subnets for tasks and jobs, an S3 gateway endpoint (free; keeps S3 traffic off the NAT), and
flow logs to the logs bucket."""

from __future__ import annotations

import ipaddress

from troposphere import GetAtt, GetAZs, Join, Ref, Select, ec2

from nexus_llm.config import NexusConfig
from nexus_llm.deploy.names import ResourceNames
from nexus_llm.deploy.stacks.common import export, global_arn, new_template, tags

CONCERN = "network"
AZS = 2


def subnet_cidrs(vpc_cidr: str) -> list[str]:
    """/20 slices of the /16: public subnets first, then private ones."""
    return [str(n) for n in ipaddress.ip_network(vpc_cidr).subnets(new_prefix=20)][: 2 * AZS]


def build(cfg: NexusConfig, names: ResourceNames):
    net = cfg.aws.network
    t = new_template(names, CONCERN, "VPC, public and private subnets, NAT, S3 endpoint, flow logs")
    vpc = t.add_resource(
        ec2.VPC(
            "Vpc",
            CidrBlock=net.vpc_cidr,
            EnableDnsHostnames=True,
            EnableDnsSupport=True,
            Tags=tags(names, CONCERN, Name=f"{names.project}-vpc"),
        )
    )
    igw = t.add_resource(ec2.InternetGateway("InternetGateway", Tags=tags(names, CONCERN)))
    attach = t.add_resource(
        ec2.VPCGatewayAttachment("GatewayAttachment", VpcId=Ref(vpc), InternetGatewayId=Ref(igw))
    )
    public_rt = t.add_resource(ec2.RouteTable("PublicRouteTable", VpcId=Ref(vpc), Tags=tags(names, CONCERN)))
    t.add_resource(
        ec2.Route(
            "PublicDefaultRoute",
            RouteTableId=Ref(public_rt),
            DestinationCidrBlock="0.0.0.0/0",
            GatewayId=Ref(igw),
            DependsOn=attach,
        )
    )
    cidrs = subnet_cidrs(net.vpc_cidr)
    public, private, private_rts = [], [], []
    for i in range(AZS):
        az = Select(i, GetAZs(""))
        pub = t.add_resource(
            ec2.Subnet(
                f"PublicSubnet{i + 1}",
                VpcId=Ref(vpc),
                CidrBlock=cidrs[i],
                AvailabilityZone=az,
                MapPublicIpOnLaunch=False,
                Tags=tags(names, CONCERN, Name=f"{names.project}-public-{i + 1}"),
            )
        )
        t.add_resource(
            ec2.SubnetRouteTableAssociation(
                f"PublicSubnet{i + 1}Routes", SubnetId=Ref(pub), RouteTableId=Ref(public_rt)
            )
        )
        priv = t.add_resource(
            ec2.Subnet(
                f"PrivateSubnet{i + 1}",
                VpcId=Ref(vpc),
                CidrBlock=cidrs[AZS + i],
                AvailabilityZone=az,
                MapPublicIpOnLaunch=False,
                Tags=tags(names, CONCERN, Name=f"{names.project}-private-{i + 1}"),
            )
        )
        rt = t.add_resource(
            ec2.RouteTable(f"PrivateRouteTable{i + 1}", VpcId=Ref(vpc), Tags=tags(names, CONCERN))
        )
        t.add_resource(
            ec2.SubnetRouteTableAssociation(
                f"PrivateSubnet{i + 1}Routes", SubnetId=Ref(priv), RouteTableId=Ref(rt)
            )
        )
        public.append(pub)
        private.append(priv)
        private_rts.append(rt)
    _nat(t, names, net.nat_gateways, public, private_rts, attach)
    t.add_resource(
        ec2.VPCEndpoint(
            "S3Endpoint",
            VpcId=Ref(vpc),
            ServiceName=Join("", ["com.amazonaws.", Ref("AWS::Region"), ".s3"]),
            VpcEndpointType="Gateway",
            RouteTableIds=[Ref(rt) for rt in private_rts],
        )
    )
    t.add_resource(
        ec2.FlowLog(
            "FlowLog",
            ResourceId=Ref(vpc),
            ResourceType="VPC",
            TrafficType="ALL",
            LogDestinationType="s3",
            # the bucket root: flow logs land under AWSLogs/<account>/vpcflowlogs/
            LogDestination=global_arn("s3", names.logs_bucket),
            # no Tags: the stack's tags propagate (and moto fails on flow-log tags to S3)
        )
    )
    export(t, names, "VpcId", Ref(vpc), "the VPC")
    export(t, names, "VpcCidr", GetAtt(vpc, "CidrBlock"), "the VPC's CIDR")
    export(
        t, names, "PublicSubnets", Join(",", [Ref(s) for s in public]), "public subnet ids, comma-separated"
    )
    export(
        t,
        names,
        "PrivateSubnets",
        Join(",", [Ref(s) for s in private]),
        "private subnet ids, comma-separated",
    )
    return t


def _nat(t, names: ResourceNames, count: int, public: list, private_rts: list, attach) -> None:
    """NAT gateway(s) in the public subnets; private route tables use the one in their zone if any."""
    gateways = []
    for i in range(count):
        eip = t.add_resource(
            ec2.EIP(f"NatIp{i + 1}", Domain="vpc", DependsOn=attach, Tags=tags(names, CONCERN))
        )
        gateways.append(
            t.add_resource(
                ec2.NatGateway(
                    f"NatGateway{i + 1}",
                    AllocationId=GetAtt(eip, "AllocationId"),
                    SubnetId=Ref(public[i]),
                    Tags=tags(names, CONCERN),
                )
            )
        )
    for i, rt in enumerate(private_rts):
        t.add_resource(
            ec2.Route(
                f"PrivateDefaultRoute{i + 1}",
                RouteTableId=Ref(rt),
                DestinationCidrBlock="0.0.0.0/0",
                NatGatewayId=Ref(gateways[min(i, count - 1)]),
            )
        )
