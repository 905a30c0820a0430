"""docs/DEPLOYMENT.md against the code, where that is cheap to check.

A contractor follows the document literally, so every `make` target, file and `python -m` module it names
must exist, every stack parameter it passes must be one the templates declare, the pages it sends staff
and residents to must be routes of the app, and the figures of its cost table must be the template's own
(alarms, alarm metrics, WAF rules) with arithmetic that adds up. The platform template is taken from the
generator; tests/unit/test_infrastructure.py keeps the committed file identical to it.
"""
from __future__ import annotations

import importlib.util
import re
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from tools import infrastructure

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "docs" / "DEPLOYMENT.md"
PATH_ROOTS = ("scripts/", "tools/", "infrastructure/", "chalicelib/", ".chalice/", "docs/", "tests/")


@pytest.fixture(scope="module")
def text() -> str:
    return DOCUMENT.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def platform() -> dict:
    return infrastructure.platform_template()


def _shell_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def _resources(template: dict, resource_type: str) -> list[dict]:
    return [resource for resource in template["Resources"].values() if resource["Type"] == resource_type]


def _cost_row(text: str, item: str) -> list[str]:
    section = text[text.index('<a id="cost"></a>'):]
    rows = [line for line in section.splitlines() if line.startswith(f"| {item} |")]
    assert len(rows) == 1, f"the cost table has no single row for {item}"
    return [cell.strip() for cell in rows[0].strip("|").split("|")]


def test_make_targets__every_one_named_exists_in_the_makefile(text):
    targets = set(re.findall(r"^([A-Za-z][\w-]*):", (ROOT / "Makefile").read_text(encoding="utf-8"), flags=re.M))
    named = set(re.findall(r"`make ([a-z][\w-]*)", text)) | {
        match for block in _shell_blocks(text) for match in re.findall(r"^\s*make ([a-z][\w-]*)", block, flags=re.M)}
    assert named, "the document names no make target: the pattern is wrong"
    assert named - targets == set()


def test_paths__every_file_the_document_names_exists(text):
    candidates = set(re.findall(r"(?<![\w./-])((?:%s)[\w./-]*\w)" % "|".join(re.escape(root) for root in PATH_ROOTS),
                                text))
    assert "scripts/package-lambda.sh" in candidates and "tools/table_upgrade.py" in candidates
    missing = sorted(path for path in candidates if not (ROOT / path).exists())
    assert missing == []


def test_python_modules__every_python_m_module_exists(text):
    modules = set(re.findall(r"python3? -m ([\w.]+)", text))
    assert "tools.table_upgrade" in modules
    assert sorted(module for module in modules if importlib.util.find_spec(module) is None) == []


def test_parameters__every_one_passed_or_listed_is_declared_by_a_template(text, platform):
    municipality = yaml.safe_load((ROOT / "infrastructure" / "municipality.yaml").read_text(encoding="utf-8"))
    declared = set(platform["Parameters"]) | set(municipality["Parameters"])
    commands = [command for block in _shell_blocks(text) for command in block.replace("\\\n", " ").splitlines()
                if "aws cloudformation" in command]
    passed = {name for command in commands if "--parameter-overrides" in command
              for name in re.findall(r"\s([A-Z][A-Za-z]+)=", command.split("--parameter-overrides", 1)[1])}
    passed |= {name for command in commands for name in re.findall(r"ParameterKey=([A-Z][A-Za-z]+)", command)}
    listed = set(re.findall(r"`([A-Z][A-Za-z]+)` \[", text))
    assert {"CodeKey", "TableDeletionProtection", "PlatformStackName"} <= passed
    assert {"LogRetentionDays", "StaffSignInRateLimit"} <= listed
    assert sorted((passed | listed) - declared) == []
    assert listed <= set(platform["Parameters"])


def test_addresses__console_and_portal_are_routes_of_the_app(text):
    import app as app_module

    for page in ("console", "portal"):
        assert f"`${{API_URL}}{page}`" in text
        assert "GET" in app_module.app.routes[f"/{page}"]


def test_cost_table__counts_are_the_templates(text, platform):
    alarms = _resources(platform, "AWS::CloudWatch::Alarm")
    alarm_metrics = sum(
        sum(1 for query in alarm["Properties"]["Metrics"] if "MetricStat" in query) if "Metrics" in alarm["Properties"]
        else 1 for alarm in alarms)
    counted = re.search(r"(\d+) alarms reading (\d+) metrics", _cost_row(text, "CloudWatch alarms")[1])
    assert (int(counted[1]), int(counted[2])) == (len(alarms), alarm_metrics)

    web_acls = _resources(platform, "AWS::WAFv2::WebACL")
    assert re.match(r"(\d+) web ACL", _cost_row(text, "WAF web ACL")[1])[1] == str(len(web_acls))
    rules = sum(len(acl["Properties"]["Rules"]) for acl in web_acls)
    assert re.match(r"(\d+) rules", _cost_row(text, "WAF rules")[1])[1] == str(rules)

    tables = _resources(platform, "AWS::DynamoDB::Table")
    assert _cost_row(text, "DynamoDB storage and PITR")[1].startswith(f"{len(tables)} tables")
    log_groups = _resources(platform, "AWS::Logs::LogGroup")
    assert _cost_row(text, "CloudWatch Logs")[1].startswith(f"{len(log_groups)} log groups")


def test_cost_table__each_product_and_the_total_add_up(text):
    section = text[text.index('<a id="cost"></a>'):]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in section.splitlines()
            if line.startswith("| ") and not line.startswith("| item")]
    total = Decimal(0)
    for row in rows[:-1]:
        product = re.fullmatch(r"(\d+) × \$(\d+\.\d\d) = \$(\d+\.\d\d)", row[-1])
        if product:
            assert Decimal(product[1]) * Decimal(product[2]) == Decimal(product[3]), row[0]
        amount = re.fullmatch(r"(?:.* = )?\$(\d+\.\d\d)(?: .*)?", row[-1])
        if amount:
            total += Decimal(amount[1])
    assert rows[-1][0] == "**total**"
    assert re.search(r"\$(\d+\.\d\d)", rows[-1][-1])[1] == str(total)


def test_concurrency__the_reserved_sum_and_the_quota_are_the_templates(text, platform):
    reserved = sum(function["Properties"].get("ReservedConcurrentExecutions", 0)
                   for function in _resources(platform, "AWS::Lambda::Function"))
    assert f"**{reserved} in all**" in text
    assert f"**at least {reserved + infrastructure.MINIMUM_UNRESERVED_CONCURRENCY}**" in text
