"""What SAM makes of template.yaml: the deployed template (``sam deploy``) and a function's
environment under ``sam local invoke``, computed with SAM's own rules so tests can check both.

:func:`render` is the SAM transform CloudFormation runs on deploy (``samtranslator``, the library
SAM CLI and CloudFormation use), after ``sam package`` has replaced local paths by S3 URIs.

:func:`local_environment` reproduces SAM CLI 1.170's resolution of a function's environment for
``sam local invoke`` (read from its source: ``samcli/lib/providers/sam_base_provider.py``,
``samcli/lib/intrinsic_resolver/intrinsics_symbol_table.py``,
``samcli/commands/local/lib/local_lambda.py`` and ``samcli/local/lambdafn/env_vars.py``):

1. Parameter values: the pseudo parameters (``AWS::StackName`` is ``local``, the region
   ``us-east-1``, the account ``123456789012``), then the template's defaults, then
   ``--parameter-overrides``.
2. SAM's plugins merge ``Globals`` into each function (samtranslator's GlobalsPlugin).
3. Intrinsics resolve with those values: ``Ref`` to a parameter gives its value; to a parameter
   without one, or to a resource, the *logical id* (``SupabaseUrl``, ``DataBucket``);
   ``Fn::GetAtt X.Arn`` a made-up function ARN; ``AWS::NoValue`` gives None.
4. Only variables the template declares reach the function. For each: the template's value, then
   the shell's, then env.json's (``"Parameters"`` for every function, then the function's own
   section by logical id). Lists, dicts and None become ``""``; ``True`` becomes ``"true"``.
5. SAM adds ``AWS_SAM_LOCAL=true``, the ``AWS_LAMBDA_*`` description of the function, a region
   and placeholder credentials.

Checked once against SAM CLI 1.170 itself (``SamFunctionProvider`` + ``LocalLambdaRunner.
_make_env_vars`` on this template and events/env.json): the same variables and values for every
function.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PSEUDO = {"AWS::AccountId": "123456789012", "AWS::Partition": "aws", "AWS::Region": "us-east-1",
          "AWS::StackName": "local", "AWS::URLSuffix": "localhost",
          "AWS::StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/local/"
                          "51af3dc0-da77-11e4-872e-1234567db123"}


def load(root: Path) -> dict[str, Any]:
    """template.yaml as plain JSON data, intrinsics in their long form (cfn-lint's decoder)."""
    from cfnlint.decode import cfn_yaml

    return json.loads(json.dumps(cfn_yaml.load(str(root / "template.yaml"))))


def render(root: Path, parameters: Mapping[str, str]) -> dict[str, Any]:
    """The CloudFormation template SAM deploys (``sam package`` then the SAM transform)."""
    from samtranslator.translator.transform import transform

    template = load(root)
    for resource in template["Resources"].values():
        properties = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri", "DefinitionUri"):
            if isinstance(properties.get(key), str):  # sam package uploads these and writes the S3 URI
                properties[key] = f"s3://capandex-artifacts/{properties[key]}"

    class NoManagedPolicyNames:  # the template names managed policies by ARN only
        def load(self) -> dict[str, str]:
            return {}

    return transform(template, dict(parameters), NoManagedPolicyNames())


def parameter_values(template: Mapping[str, Any], overrides: Mapping[str, str] | None = None) -> dict[str, Any]:
    values: dict[str, Any] = dict(PSEUDO)
    values.update({name: p["Default"] for name, p in template.get("Parameters", {}).items() if "Default" in p})
    values.update(overrides or {})
    return values


def with_globals(template: dict[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """The template after SAM's plugins (Globals merged into every function), as SAM CLI runs them."""
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import prepare_plugins

    merged = copy.deepcopy(template)
    Parser().parse(merged, dict(values), prepare_plugins([], parameters=dict(values)))
    return merged


class Resolver:
    """SAM CLI's intrinsic resolution with ``ignore_errors`` (rule 3 of the module docstring)."""

    def __init__(self, template: Mapping[str, Any], values: Mapping[str, Any]) -> None:
        self.template, self.values = template, values

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return None
        if name in self.values:
            return self.values[name]
        return name  # a parameter without a value, or a resource: its logical id

    def get_att(self, name: str, attribute: str) -> str:
        if attribute != "Arn":
            raise NotImplementedError(f"GetAtt {name}.{attribute} in an environment variable")
        function = self.template["Resources"].get(name, {}).get("Properties", {}).get("FunctionName", name)
        return f"arn:aws:lambda:{self.values['AWS::Region']}:{self.values['AWS::AccountId']}:function:{function}"

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template["Conditions"][name]))

    def sub(self, text: str, variables: Mapping[str, Any]) -> str:
        import re

        def one(match: re.Match[str]) -> str:
            key = match.group(1)
            if key in variables:
                return str(self.resolve(variables[key]))
            if "." in key and not key.startswith("AWS::"):
                return self.get_att(*key.split(".", 1))
            return str(self.ref(key))

        return re.sub(r"\$\{([^}!]+)\}", one, text)

    def resolve(self, value: Any) -> Any:
        if not isinstance(value, dict) or len(value) != 1:
            return value
        (function, argument), = value.items()
        if function == "Ref":
            return self.ref(argument)
        if function == "Fn::GetAtt":
            return self.get_att(*(argument if isinstance(argument, list) else argument.split(".", 1)))
        if function == "Fn::Sub":
            text, variables = (argument, {}) if isinstance(argument, str) else argument
            return self.sub(text, variables)
        if function == "Fn::If":
            name, when_true, when_false = argument
            return self.resolve(when_true if self.condition(name) else when_false)
        if function == "Fn::Equals":
            return self.resolve(argument[0]) == self.resolve(argument[1])
        if function == "Fn::Not":
            return not self.resolve(argument[0])
        if function == "Condition":
            return self.condition(argument)
        if function == "Fn::Join":
            return argument[0].join(str(self.resolve(part)) for part in argument[1])
        raise NotImplementedError(f"{function} in an environment variable")


def stringify(value: Any) -> str:
    """``EnvironmentVariables._stringify_value``."""
    if isinstance(value, dict | list | tuple) or value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


def local_environment(root: Path, function_id: str, env_json: Mapping[str, Any], *,
                      shell: Mapping[str, str] | None = None,
                      parameter_overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment ``sam local invoke <function_id> --env-vars <env_json>`` gives the function."""
    template = load(root)
    values = parameter_values(template, parameter_overrides)
    function = with_globals(template, values)["Resources"][function_id]["Properties"]
    resolver = Resolver(template, values)
    declared = {name: resolver.resolve(value)
                for name, value in (function.get("Environment") or {}).get("Variables", {}).items()}
    overrides = {**env_json.get("Parameters", {}), **env_json.get(function_id, {})}
    environment = {"AWS_SAM_LOCAL": "true", "AWS_LAMBDA_FUNCTION_NAME": function_id,
                   "AWS_LAMBDA_FUNCTION_HANDLER": function["Handler"],
                   "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.get("MemorySize", 128)),
                   "AWS_LAMBDA_FUNCTION_TIMEOUT": str(function.get("Timeout", 3)),
                   "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST", "AWS_REGION": "us-east-1",
                   "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "defaultkey",
                   "AWS_SECRET_ACCESS_KEY": "defaultsecret", "AWS_ACCOUNT_ID": "123456789012",
                   "AWS_LAMBDA_LOG_GROUP_NAME": stringify(resolver.resolve(
                       (function.get("LoggingConfig") or {}).get("LogGroup", f"aws/lambda/{function_id}"))),
                   "AWS_LAMBDA_LOG_STREAM_NAME": "$LATEST", "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand"}
    for name, value in declared.items():
        if shell and name in shell:
            value = shell[name]
        if name in overrides:
            value = overrides[name]
        environment[name] = stringify(value)
    return environment


def functions(root: Path) -> dict[str, dict[str, Any]]:
    """Logical id → properties of every ``AWS::Serverless::Function`` (Globals not merged)."""
    return {name: r["Properties"] for name, r in load(root)["Resources"].items()
            if r["Type"] == "AWS::Serverless::Function"}
