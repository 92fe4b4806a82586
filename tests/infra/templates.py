"""Reading CloudFormation templates as deployed with their parameters' defaults: conditions
evaluated, ``Ref`` to parameters and ``Fn::FindInMap`` resolved, ``AWS::NoValue`` dropped;
references to resources become ``<ref Type>`` so two templates compare by what they point at.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

NO_VALUE = object()


class Template:
    """A template evaluated at its parameters' defaults (or ``overrides``)."""

    def __init__(self, doc: dict[str, Any], **overrides: str) -> None:
        self.doc = doc
        self.parameters = {
            name: overrides.get(name, spec.get("Default"))
            for name, spec in doc.get("Parameters", {}).items()
        }
        self._conditions: dict[str, bool] = {}
        self.resources: dict[str, dict[str, Any]] = {
            name: resource
            for name, resource in doc.get("Resources", {}).items()
            if "Condition" not in resource or self.condition(resource["Condition"])
        }

    # -- evaluation ------------------------------------------------------------------------

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            self._conditions[name] = bool(self._test(self.doc["Conditions"][name]))
        return self._conditions[name]

    def _test(self, expr: Any) -> Any:
        if isinstance(expr, dict) and len(expr) == 1:
            ((fn, arg),) = expr.items()
            if fn == "Fn::Equals":
                return self.value(arg[0]) == self.value(arg[1])
            if fn == "Fn::Not":
                return not self._test(arg[0])
            if fn == "Fn::And":
                return all(self._test(a) for a in arg)
            if fn == "Fn::Or":
                return any(self._test(a) for a in arg)
            if fn == "Condition":
                return self.condition(arg)
        return self.value(expr)

    def value(self, expr: Any) -> Any:
        """``expr`` evaluated; ``NO_VALUE`` for ``AWS::NoValue``."""
        if isinstance(expr, list):
            return [v for v in (self.value(e) for e in expr) if v is not NO_VALUE]
        if not isinstance(expr, dict):
            return expr
        if len(expr) == 1:
            ((fn, arg),) = expr.items()
            if fn == "Ref":
                if arg == "AWS::NoValue":
                    return NO_VALUE
                if arg in self.parameters:
                    return self.parameters[arg]
                if arg in self.doc.get("Resources", {}):
                    return f"<ref {self.doc['Resources'][arg]['Type']}>"
                return f"<{arg}>"
            if fn == "Fn::GetAtt":
                target = arg[0] if isinstance(arg, list) else str(arg).split(".")[0]
                attribute = arg[1] if isinstance(arg, list) else str(arg).split(".", 1)[1]
                kind = self.doc.get("Resources", {}).get(target, {}).get("Type", target)
                return f"<ref {kind}.{attribute}>"
            if fn == "Fn::If":
                name, yes, no = arg
                return self.value(yes if self.condition(name) else no)
            if fn == "Fn::FindInMap":
                keys = [self.value(k) for k in arg]
                return self.doc["Mappings"][str(keys[0])][str(keys[1])][str(keys[2])]
            if fn in ("Fn::Sub", "Fn::Join", "Fn::Select", "Fn::Split", "Fn::GetAZs"):
                return {fn: self.value(arg)}
        out = {}
        for key, item in expr.items():
            evaluated = self.value(item)
            if evaluated is not NO_VALUE:
                out[key] = evaluated
        return out

    def with_parameters(self, expr: Any) -> Any:
        """``expr`` with parameters, conditions and mappings resolved, and every reference to a
        resource (``Ref``, ``Fn::GetAtt``, ``Fn::Sub``) left for CloudFormation to resolve."""
        if isinstance(expr, list):
            return [v for v in (self.with_parameters(e) for e in expr) if v is not NO_VALUE]
        if not isinstance(expr, dict):
            return expr
        if len(expr) == 1:
            ((fn, arg),) = expr.items()
            if fn == "Ref":
                if arg == "AWS::NoValue":
                    return NO_VALUE
                return self.parameters.get(arg, expr)
            if fn == "Fn::If":
                name, yes, no = arg
                return self.with_parameters(yes if self.condition(name) else no)
            if fn == "Fn::FindInMap":
                return self.value(expr)
            if fn == "Fn::GetAtt":
                return expr
        out = {}
        for key, item in expr.items():
            evaluated = self.with_parameters(item)
            if evaluated is not NO_VALUE:
                out[key] = evaluated
        return out

    # -- queries ---------------------------------------------------------------------------

    def of_type(self, kind: str) -> dict[str, dict[str, Any]]:
        """Resources of ``kind`` (that exist at these parameters), their properties evaluated."""
        return {
            name: self.value(resource.get("Properties", {}))
            for name, resource in self.resources.items()
            if resource["Type"] == kind
        }

    def raw(self, name: str) -> dict[str, Any]:
        return dict(self.doc["Resources"][name])

    def function(self, handler: str) -> tuple[str, dict[str, Any]]:
        """The Lambda function with ``handler`` (its logical id and evaluated properties)."""
        [(name, props)] = [
            (n, p)
            for n, p in self.of_type("AWS::Lambda::Function").items()
            if p.get("Handler") == handler
        ]
        return name, props

    def role_name_of(self, expr: Any) -> str:
        """The logical id of the role a ``Role``/``TaskRoleArn`` expression points at."""
        if isinstance(expr, dict) and "Fn::GetAtt" in expr:
            att = expr["Fn::GetAtt"]
            return str(att[0] if isinstance(att, list) else str(att).split(".")[0])
        raise AssertionError(f"not a role reference: {expr!r}")

    def identity_statements(self, role: str) -> list[dict[str, Any]]:
        """Every statement of the role's inline policies and of AWS::IAM::Policy resources
        attached to it."""
        statements: list[dict[str, Any]] = []
        props = self.value(self.doc["Resources"][role]["Properties"])
        for policy in props.get("Policies", []):
            statements.extend(_listed(policy["PolicyDocument"]["Statement"]))
        for name, policy in self.of_type("AWS::IAM::Policy").items():
            raw_roles = self.doc["Resources"][name]["Properties"].get("Roles", [])
            if any(isinstance(r, dict) and r.get("Ref") == role for r in raw_roles):
                statements.extend(_listed(policy["PolicyDocument"]["Statement"]))
        return statements

    def actions(self, role: str) -> set[str]:
        return {
            action
            for statement in self.identity_statements(role)
            if statement.get("Effect") == "Allow"
            for action in _listed(statement.get("Action", []))
        }

    def roles_trusting(self, service: str) -> list[str]:
        names = []
        for name, props in self.of_type("AWS::IAM::Role").items():
            for statement in _listed(props["AssumeRolePolicyDocument"]["Statement"]):
                if service in _listed(statement.get("Principal", {}).get("Service", [])):
                    names.append(name)
        return names


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def iter_policy_documents(template: Template) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every identity policy document: inline ones of roles and AWS::IAM::Policy resources."""
    for name, props in template.of_type("AWS::IAM::Role").items():
        for policy in props.get("Policies", []):
            yield name, policy["PolicyDocument"]
    for name, props in template.of_type("AWS::IAM::Policy").items():
        yield name, props["PolicyDocument"]
    for name, props in template.of_type("AWS::IAM::ManagedPolicy").items():
        yield name, props["PolicyDocument"]


def listed(value: Any) -> list[Any]:
    """``value`` as a list (IAM and CloudFormation take a single item or a list)."""
    return _listed(value)


def summary(template: Template) -> dict[str, Any]:
    """What the SAM and CDK templates must agree on."""
    tables = []
    for props in template.of_type("AWS::DynamoDB::Table").values():
        tables.append(
            {
                "keys": sorted((k["AttributeName"], k["KeyType"]) for k in props["KeySchema"]),
                "attributes": sorted(
                    (a["AttributeName"], a["AttributeType"]) for a in props["AttributeDefinitions"]
                ),
                "gsis": sorted(
                    (
                        g["IndexName"],
                        tuple(sorted((k["AttributeName"], k["KeyType"]) for k in g["KeySchema"])),
                        g["Projection"]["ProjectionType"],
                    )
                    for g in props.get("GlobalSecondaryIndexes", [])
                ),
                "ttl": (
                    props["TimeToLiveSpecification"]["AttributeName"],
                    props["TimeToLiveSpecification"]["Enabled"],
                ),
                "billing": props["BillingMode"],
                "pitr": props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"],
                "sse": props["SSESpecification"]["SSEEnabled"],
            }
        )
    streams = [
        {
            "mode": p.get("StreamModeDetails", {}).get("StreamMode", "PROVISIONED"),
            "encryption": (p["StreamEncryption"]["EncryptionType"], p["StreamEncryption"]["KeyId"]),
            "retention_hours": int(p.get("RetentionPeriodHours", 24)),
        }
        for p in template.of_type("AWS::Kinesis::Stream").values()
    ]
    mappings = sorted(
        (
            {
                key: value
                for key, value in props.items()
                if key not in ("FunctionName", "EventSourceArn")
            }
            | {"source": props["EventSourceArn"]}
            for props in template.of_type("AWS::Lambda::EventSourceMapping").values()
        ),
        key=lambda m: str(m["source"]),
    )
    functions = {}
    roles = {}
    for handler in ("worker.handler", "status.handler"):
        _, props = template.function(handler)
        functions[handler] = {
            "environment": sorted(props["Environment"]["Variables"]),
            "runtime": props["Runtime"],
            "architectures": props.get("Architectures"),
            "memory": int(props["MemorySize"]),
            "timeout": int(props["Timeout"]),
            "tracing": props["TracingConfig"]["Mode"],
        }
        raw_role = template.doc["Resources"][template.function(handler)[0]]["Properties"]["Role"]
        roles[handler] = sorted(template.actions(template.role_name_of(raw_role)))
    [scheduler_role] = template.roles_trusting("scheduler.amazonaws.com")
    roles["scheduler"] = sorted(template.actions(scheduler_role))
    queues = sorted(
        (
            int(p.get("VisibilityTimeout", 30)),
            int(p.get("MessageRetentionPeriod", 345600)),
            p.get("SqsManagedSseEnabled"),
            (p.get("RedrivePolicy") or {}).get("maxReceiveCount"),
        )
        for p in template.of_type("AWS::SQS::Queue").values()
    )
    alarms = sorted(
        (p["Namespace"], p["MetricName"], p["Statistic"], float(p["Threshold"]))
        for p in template.of_type("AWS::CloudWatch::Alarm").values()
    )
    buckets = [
        {
            "encryption": p["BucketEncryption"]["ServerSideEncryptionConfiguration"][0][
                "ServerSideEncryptionByDefault"
            ]["SSEAlgorithm"],
            "public_access": p["PublicAccessBlockConfiguration"],
            "expiry_days": int(p["LifecycleConfiguration"]["Rules"][0]["ExpirationInDays"]),
        }
        for p in template.of_type("AWS::S3::Bucket").values()
    ]
    return {
        "tables": tables,
        "streams": streams,
        "event_source_mappings": mappings,
        "functions": functions,
        "iam_actions": roles,
        "queues": queues,
        "alarms": alarms,
        "buckets": buckets,
        "schedule_groups": len(template.of_type("AWS::Scheduler::ScheduleGroup")),
        "function_urls": sorted(
            p["AuthType"] for p in template.of_type("AWS::Lambda::Url").values()
        ),
    }
