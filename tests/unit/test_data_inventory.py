"""The data inventory: every stored attribute explained, the document current, no personal data."""
import re
from pathlib import Path

from chalicelib.storage import inventory

ROOT = Path(__file__).resolve().parents[2]

# Attribute names that would mean the platform keeps what it must never keep (docs/ARCHITECTURE.md#tables, docs/CONTRACTS.md#individual-number).
FORBIDDEN = re.compile(r"(birth|address|individual|my_?number|serial|phone|mail|gender|sex|age$|kana|full_?name|surname)")
# `name` is allowed only where it names an organisation, never a person.
ORGANISATION_TABLES = {"municipalities", "merchants", "partners", "operators", "transfer_programmes"}


def test_inventory__explains_every_attribute_of_every_table_and_nothing_else():
    for table, rows in inventory.model_attributes().items():
        assert table in inventory.TABLES, f"table {table} is not in the data inventory"
        documented = set(inventory.TABLES[table]["attributes"])
        stored = {name for name, _, _ in rows}
        assert stored == documented, f"{table}: undocumented {stored - documented}, stale {documented - stored}"
    assert set(inventory.TABLES) == set(inventory.model_attributes())


def test_inventory__document_is_current():
    assert (ROOT / "docs" / "DATA.md").read_text(encoding="utf-8") == inventory.render_markdown(), "run `make data-inventory`"


def test_models__hold_no_personal_data_attributes():
    for table, rows in inventory.model_attributes().items():
        for name, _, _ in rows:
            assert not FORBIDDEN.search(name), f"{table}.{name} looks like personal data"
            if name == "name":
                assert table in ORGANISATION_TABLES, f"{table}.name would name a person"
