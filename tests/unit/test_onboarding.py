"""Onboarding a municipality: the same function behind the CloudFormation custom resource and the local
command, fed from the real onboarding template and the example parameter file."""
import http.server
import json
import threading
from pathlib import Path

import pytest

from chalicelib import errors
from chalicelib.api import dependencies as deps
from chalicelib.api import tenant_handlers
from chalicelib.services import ledger, staff
from tests.fakes import FakeLedgerStore, FakeStaffStore
from tools import onboard

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "infrastructure" / "examples" / "nagahama.parameters.json"
PASSWORD = "correct-horse-battery"


class AuditLog(list):
    def __call__(self, scope, action, actor, mykey_id=None, counter_terminal_id=None, details=None):
        self.append((scope, action, actor, details))


def test_onboard__example_parameters__register_programme_budget_and_first_approver():
    store, staff_store, audit = FakeLedgerStore(), FakeStaffStore(), AuditLog()
    answer = onboard.onboard(EXAMPLE, PASSWORD, store, staff_store, audit)
    assert answer == {"PhysicalResourceId": "municipality-252034",
                      "Data": {"MunicipalityCode": "252034", "MunicipalityName": "長浜市", "FirstStaffId": "nagahama-admin"}}
    municipality = store.get_municipality("252034")
    assert (municipality.point_name, municipality.pin_free_limit, municipality.max_amount, municipality.approval_threshold,
            municipality.expiry_rule) == ("ながはまポイント", 3000, 50_000, 30_000, {"kind": "fiscal_year_end"})
    assert ledger.budget_remaining(store, municipality) == 10_000_000
    account = staff_store.get_staff("nagahama-admin")
    assert account.role == staff.APPROVER and staff.password_matches(PASSWORD, account.password_hash)
    assert [(scope, action) for scope, action, *_ in audit] == [("252034", "tenant_registered")]


def test_onboard__again_with_new_settings__updates_the_programme_and_keeps_the_staff_password():
    store, staff_store, audit = FakeLedgerStore(), FakeStaffStore(), AuditLog()
    onboard.onboard(EXAMPLE, PASSWORD, store, staff_store, audit)
    properties = onboard.tenant_properties(onboard.load_template(), {
        **onboard.read_parameter_file(EXAMPLE), "AnnualBudget": "12000000", "ExpiryRule": "months:12",
        "FirstStaffPassword": "another-password-1"})
    tenant_handlers.apply_request("Update", properties, store, staff_store, audit)
    municipality = store.get_municipality("252034")
    assert municipality.budget_total == 12_000_000 and municipality.expiry_rule == {"kind": "months_after_grant", "months": 12}
    assert ledger.budget_remaining(store, municipality) == 12_000_000
    assert staff.password_matches(PASSWORD, staff_store.get_staff("nagahama-admin").password_hash)
    assert audit[-1][1] == "tenant_updated"


@pytest.mark.parametrize("override,error", [
    ({"MunicipalityCode": "252035"}, errors.InvalidMunicipalityCode),
    ({"PinFreeLimit": "60000"}, errors.ValidationFailed),
    ({"AnnualBudget": "lots"}, errors.ValidationFailed),
    ({"ExpiryRule": "forever"}, errors.ValidationFailed),
    ({"FirstStaffPassword": "short"}, errors.ValidationFailed),
])
def test_onboard__bad_parameters__are_refused_and_nothing_is_registered(override, error):
    store, staff_store = FakeLedgerStore(), FakeStaffStore()
    properties = onboard.tenant_properties(onboard.load_template(), {
        **onboard.read_parameter_file(EXAMPLE), "FirstStaffPassword": PASSWORD, **override})
    with pytest.raises(error):
        tenant_handlers.apply_request("Create", properties, store, staff_store, AuditLog())
    assert store.municipalities == {} and staff_store.accounts == {}


def test_onboard__first_staff_id_of_another_municipality__is_refused():
    store, staff_store = FakeLedgerStore(), FakeStaffStore()
    staff_store.put_staff(staff.StaffAccount("nagahama-admin", "131164", staff.APPROVER, "x"))
    with pytest.raises(errors.StaffIdTaken):
        onboard.onboard(EXAMPLE, PASSWORD, store, staff_store, AuditLog())
    assert store.municipalities == {}


def test_tenant_properties__are_exactly_what_the_handler_reads():
    properties = onboard.tenant_properties(onboard.load_template(), {**onboard.read_parameter_file(EXAMPLE),
                                                                     "FirstStaffPassword": PASSWORD})
    assert sorted(properties) == sorted(tenant_handlers.PROPERTY_NAMES)


def test_tenant_properties__unknown_parameter__is_refused():
    with pytest.raises(SystemExit):
        onboard.tenant_properties(onboard.load_template(), {"Municipality": "252034"})


class _ResponseCatcher(http.server.BaseHTTPRequestHandler):
    received: list = []

    def do_PUT(self):  # noqa: N802 - the name http.server calls
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((self.headers.get("Content-Type"), json.loads(body)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *arguments):
        pass


@pytest.fixture
def response_url():
    _ResponseCatcher.received = []
    server = http.server.HTTPServer(("127.0.0.1", 0), _ResponseCatcher)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/presigned"
    server.shutdown()


def _event(request_type, response_url, **overrides):
    properties = onboard.tenant_properties(onboard.load_template(), {**onboard.read_parameter_file(EXAMPLE),
                                                                     "FirstStaffPassword": PASSWORD, **overrides})
    return {"RequestType": request_type, "ResponseURL": response_url, "StackId": "arn:stack/nagahama",
            "RequestId": "request-1", "LogicalResourceId": "Tenant", "ResourceType": "Custom::MunicipalityTenant",
            "ResourceProperties": {"ServiceToken": "arn:lambda:register_tenant", **properties}}


class _Identity:
    def __init__(self):
        self.audit = AuditLog()


@pytest.fixture
def stores():
    store, staff_store = FakeLedgerStore(), FakeStaffStore()
    deps.override(ledger_store=store, staff_store=staff_store, identity_store=_Identity())
    yield store, staff_store
    deps.reset()


def test_register_tenant__answers_cloudformation_on_the_presigned_url(response_url, stores):
    result = tenant_handlers.register_tenant(_event("Create", response_url), None)
    assert result == {"answered": "SUCCESS"}
    content_type, answer = _ResponseCatcher.received[0]
    assert content_type == ""  # the pre-signed URL was signed without one
    assert (answer["Status"], answer["PhysicalResourceId"], answer["RequestId"], answer["LogicalResourceId"]) == (
        "SUCCESS", "municipality-252034", "request-1", "Tenant")
    assert answer["Data"]["MunicipalityName"] == "長浜市" and PASSWORD not in json.dumps(answer)
    assert stores[0].get_municipality("252034") is not None


def test_register_tenant__refusal__answers_failed_with_the_reason_and_registers_nothing(response_url, stores):
    result = tenant_handlers.register_tenant(_event("Create", response_url, PinFreeLimit="999999"), None)
    assert result == {"answered": "FAILED"}
    answer = _ResponseCatcher.received[0][1]
    assert answer["Status"] == "FAILED" and answer["Reason"].startswith("validation_failed")
    assert stores[0].municipalities == {}


def test_register_tenant__delete__keeps_the_tenant(response_url, stores):
    tenant_handlers.register_tenant(_event("Create", response_url), None)
    tenant_handlers.register_tenant({**_event("Delete", response_url), "PhysicalResourceId": "municipality-252034"}, None)
    assert _ResponseCatcher.received[-1][1]["Status"] == "SUCCESS"
    assert stores[0].get_municipality("252034") is not None
