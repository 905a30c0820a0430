"""The onboarding stack's custom resource: a municipality's CloudFormation stack registers its tenant here.

`infrastructure/municipality.yaml` declares one `Custom::MunicipalityTenant` whose ServiceToken is this
function (exported by the platform stack). CloudFormation sends Create, Update and Delete requests; the
function answers on the request's pre-signed `ResponseURL`, as every custom resource must, or the stack
would wait an hour and fail.

Create and Update both call `onboarding.onboard_municipality` (the local `python -m tools.onboard`
calls the same function through `apply_request`). Delete leaves the tenant in place: a municipality's
ledger is a public record that must outlive any one stack, so removing it is a platform operator's
decision, never a side effect of deleting a stack.
"""
from __future__ import annotations

import json

from chalice import Blueprint

tenant_handlers = Blueprint(__name__)

# The custom resource's properties, as the onboarding template passes them (CloudFormation sends every
# property as a string).
PROPERTY_NAMES = (
    "MunicipalityCode", "MunicipalityName", "PointName", "ExpiryRule", "PinFreeLimit", "MaxAmountPerOperation",
    "ApprovalThreshold", "AnnualBudget", "FirstStaffId", "FirstStaffPassword",
)


def settings_from_properties(properties: dict) -> dict:
    """Programme settings from the template's properties. `ExpiryRule` is `fiscal_year_end` or `months:N`."""
    from chalicelib import errors
    from chalicelib.domain import identifiers

    missing = [name for name in PROPERTY_NAMES if name not in properties]
    if missing:
        raise errors.ValidationFailed(f"onboarding properties missing: {', '.join(missing)}", field=missing[0])
    rule_text = str(properties["ExpiryRule"]).strip()
    if rule_text.startswith("months:") and identifiers.ascii_digits(rule_text[len("months:"):], 3):
        rule = {"kind": "months_after_grant", "months": int(rule_text[len("months:"):])}
    else:
        rule = {"kind": rule_text}

    def number(name: str) -> int:
        text = str(properties[name]).strip()
        if not identifiers.ascii_digits(text):
            raise errors.ValidationFailed(f"{name} must be a whole number", field=name)
        return int(text)

    return {
        "point_name": str(properties["PointName"]),
        "expiry_rule": rule,
        "pin_free_limit": number("PinFreeLimit"),
        "max_amount": number("MaxAmountPerOperation"),
        "approval_threshold": number("ApprovalThreshold"),
        "budget_total": number("AnnualBudget"),
    }


def apply_request(request_type: str, properties: dict, ledger_store, staff_store, audit) -> dict:
    """Do what one CloudFormation request asks; returns the resource's physical id and data."""
    from chalicelib.services import onboarding

    code = str(properties.get("MunicipalityCode", ""))
    if request_type == "Delete":
        return {"PhysicalResourceId": f"municipality-{code}", "Data": {}}
    settings = onboarding.onboard_municipality(
        ledger_store, staff_store, audit, code, str(properties.get("MunicipalityName", "")),
        settings_from_properties(properties), str(properties.get("FirstStaffId", "")),
        str(properties.get("FirstStaffPassword", "")),
    )
    data = {"MunicipalityCode": settings["municipality_code"], "MunicipalityName": settings["name"],
            "FirstStaffId": str(properties["FirstStaffId"])}
    return {"PhysicalResourceId": f"municipality-{settings['municipality_code']}", "Data": data}


def answer(event: dict, status: str, reason: str, physical_resource_id: str, data: dict) -> bytes:
    """The response body CloudFormation expects on the request's ResponseURL."""
    return json.dumps({
        "Status": status,
        "Reason": reason[:1000],
        "PhysicalResourceId": physical_resource_id,
        "StackId": event["StackId"],
        "RequestId": event["RequestId"],
        "LogicalResourceId": event["LogicalResourceId"],
        "NoEcho": False,
        "Data": data,
    }, ensure_ascii=False).encode("utf-8")


def send_answer(response_url: str, body: bytes, timeout_seconds: float = 10.0) -> None:
    import urllib.request

    # The pre-signed URL was signed for an empty Content-Type: any other value is refused by S3.
    request = urllib.request.Request(response_url, data=body, method="PUT",
                                     headers={"Content-Type": "", "Content-Length": str(len(body))})
    with urllib.request.urlopen(request, timeout=timeout_seconds) as response:
        response.read()


@tenant_handlers.lambda_function(name="register_tenant")
def register_tenant(event, context):
    from chalicelib import errors
    from chalicelib.api import dependencies as deps
    from chalicelib.observability import get_logger

    properties = dict(event.get("ResourceProperties") or {})
    fallback_id = event.get("PhysicalResourceId") or f"municipality-{properties.get('MunicipalityCode', 'unknown')}"
    try:
        outcome = apply_request(event["RequestType"], properties, deps.get_ledger_store(), deps.get_staff_store(),
                                deps.get_identity_store().audit)
        body = answer(event, "SUCCESS", "", outcome["PhysicalResourceId"], outcome["Data"])
    except errors.DomainError as refusal:
        get_logger().warning("tenant request refused", extra={"code": refusal.code, "field": refusal.details.get("field")})
        body = answer(event, "FAILED", f"{refusal.code}: {refusal.message}", fallback_id, {})
    except Exception as failure:  # CloudFormation must hear back whatever happened, or it waits an hour.
        get_logger().exception("tenant request failed")
        body = answer(event, "FAILED", f"internal_error: {type(failure).__name__}", fallback_id, {})
    send_answer(event["ResponseURL"], body)
    return {"answered": json.loads(body)["Status"]}
