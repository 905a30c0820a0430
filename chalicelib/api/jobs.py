"""Scheduled jobs: the daily expiry run, just after midnight in Japan (15:05 UTC)."""
from chalice import Blueprint, Cron

jobs = Blueprint(__name__)


@jobs.schedule(Cron(5, 15, "*", "*", "?", "*"), name="expire_points")
def expire_points(event):
    from chalicelib.api import dependencies as deps
    from chalicelib.observability import get_logger
    from chalicelib.services import ledger

    posted = ledger.expire_due(deps.get_ledger_store(), deps.get_clock())
    get_logger().info("expiry run", extra={"expire_transfers": len(posted), "points": sum(t.amount for t in posted)})
    return {"expire_transfers": len(posted)}
