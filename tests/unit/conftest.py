"""Fixtures shared by the unit tests of the deployable templates (infrastructure, hardening, table access)."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def app():
    """The Chalice app object, as the template generator reads it."""
    import app as app_module

    return app_module.app


@pytest.fixture(scope="module")
def template() -> dict:
    """The platform template generated from the code now (not the committed file)."""
    from tools import infrastructure

    return infrastructure.platform_template()
