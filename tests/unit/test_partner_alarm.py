"""The operator's alarm on partner messages nobody can be answered about watches the metric the consumer
really publishes: same namespace, name and dimensions, as Powertools writes them in Lambda."""
from __future__ import annotations

import json
from pathlib import Path

from chalicelib.observability import count_now

ROOT = Path(__file__).resolve().parents[2]


def test_unattributed_alarm__watches_exactly_the_metric_the_consumer_publishes(template, monkeypatch, capsys):
    environment = json.loads((ROOT / ".chalice" / "config.json").read_text(encoding="utf-8"))["environment_variables"]
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", environment["POWERTOOLS_SERVICE_NAME"])
    count_now("PartnerMessagesUnattributed")
    [published] = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "PartnerMessagesUnattributed" in line]
    [directive] = published["_aws"]["CloudWatchMetrics"]
    published_dimensions = {name: published[name] for name in directive["Dimensions"][0]}

    alarm = template["Resources"]["PartnerMessagesUnattributedAlarm"]["Properties"]
    assert alarm["Namespace"] == directive["Namespace"]
    assert alarm["MetricName"] == directive["Metrics"][0]["Name"]
    assert {dimension["Name"]: dimension["Value"] for dimension in alarm["Dimensions"]} == published_dimensions
    assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}] and alarm["Threshold"] == 0
