"""Municipal Point Cloud on Chalice: this module only wires blueprints and middleware together."""
from chalice import Chalice

from chalicelib.api.administration_routes import administration_api
from chalicelib.api.console_routes import console_api
from chalicelib.api.conversion_handlers import conversion_handlers
from chalicelib.api.grant_batch_handlers import grant_batch_handlers
from chalicelib.api.grant_batch_routes import grant_batch_api
from chalicelib.api.health import health_api
from chalicelib.api.identity_routes import identity_api
from chalicelib.api.jobs import jobs
from chalicelib.api.partner_reconciliation_routes import partner_reconciliation_api
from chalicelib.api.partner_routes import partner_api
from chalicelib.api.portal_routes import portal_api
from chalicelib.api.projection_handlers import projection_handlers
from chalicelib.api.report_routes import report_api
from chalicelib.api.staff_routes import staff_api
from chalicelib.api.tenant_handlers import tenant_handlers
from chalicelib.api.terminal_routes import terminal_api
from chalicelib.api.transfer_out_routes import transfer_out_api
from chalicelib.observability import http_middleware, tracing_middleware

app = Chalice(app_name="municipal-point-cloud")
app.register_blueprint(health_api)
app.register_blueprint(terminal_api)
app.register_blueprint(staff_api)
app.register_blueprint(identity_api)
app.register_blueprint(jobs)
app.register_blueprint(partner_api)
app.register_blueprint(partner_reconciliation_api)
app.register_blueprint(conversion_handlers)
app.register_blueprint(transfer_out_api)
app.register_blueprint(portal_api)
app.register_blueprint(console_api)
app.register_blueprint(administration_api)
app.register_blueprint(report_api)
app.register_blueprint(grant_batch_api)
app.register_blueprint(grant_batch_handlers)
app.register_blueprint(tenant_handlers)
app.register_blueprint(projection_handlers)
# Tracing first, so the request log and metrics are inside the traced entry.
app.register_middleware(tracing_middleware, "all")
app.register_middleware(http_middleware, "http")
