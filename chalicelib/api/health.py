"""Liveness: answers without touching any other service."""
from chalice import Blueprint

health_api = Blueprint(__name__)


@health_api.route("/v1/health", methods=["GET"])
def health():
    return {"status": "ok"}
