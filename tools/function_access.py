"""Which DynamoDB tables each Lambda function may use, and how: the one declaration its IAM role is built from.

`tools/infrastructure.py` turns `FUNCTION_TABLES` into each function's table statements, so the platform
template grants a function exactly what is declared here: a table missing from a function's entry is not
in its role at all, a table it only reads gets only read actions, and an index is named only where the
function queries it. `tests/integration/test_function_access.py` keeps the declaration true: it runs each
function's real handler against DynamoDB Local, records every DynamoDB call, and fails when a call is not
declared here, or (for the functions Lambda invokes with events) when a declared grant is never used.

Actions are IAM's item actions without the `dynamodb:` prefix. A transaction needs the item action of each
of its parts (`TransactWriteItems` of a Put, an Update and a ConditionCheck needs `PutItem`, `UpdateItem`
and `ConditionCheckItem` on the tables they name; `TransactGetItems` needs `GetItem`); a batch needs
`BatchGetItem` or `BatchWriteItem` on each table in it. Table names are the models' base names
(`Meta.base_name` in `chalicelib/storage/models.py`); the stage's prefix is added by the template.

Derived from the stores the handlers call (`chalicelib/storage/*.py`): each entry below says which store
methods need it. Operational tools (`python -m chalicelib.storage.projection --backfill`, `tools/onboard.py`)
run with the operator's own credentials, not a function's role, and are not listed.
"""
from __future__ import annotations

from dataclasses import dataclass

GET, BATCH_GET, QUERY, SCAN = "GetItem", "BatchGetItem", "Query", "Scan"
PUT, UPDATE, DELETE, BATCH_WRITE, CONDITION_CHECK = "PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "ConditionCheckItem"
READ_ACTIONS = frozenset({GET, BATCH_GET, QUERY, SCAN})
WRITE_ACTIONS = frozenset({PUT, UPDATE, DELETE, BATCH_WRITE, CONDITION_CHECK})
# What can be done on a global secondary index: read it, never write it.
INDEX_ACTIONS = frozenset({QUERY, SCAN})


@dataclass(frozen=True)
class TableAccess:
    actions: frozenset[str]  # on the table itself
    index_actions: frozenset[tuple[str, str]] = frozenset()  # (index name, action) on its indexes

    @property
    def indexes(self) -> frozenset[str]:
        return frozenset(index for index, _ in self.index_actions)

    def allows(self, action: str, index: str | None = None) -> bool:
        return action in self.actions if index is None else (index, action) in self.index_actions

    @property
    def writes(self) -> bool:
        return bool(self.actions & WRITE_ACTIONS)


def access(*actions: str, indexes: dict[str, tuple[str, ...]] | None = None) -> TableAccess:
    """`actions` on the table; `indexes` maps an index the function reads to the actions it uses on it."""
    index_actions = frozenset((index, action) for index, used in (indexes or {}).items() for action in used)
    unknown = set(actions) - READ_ACTIONS - WRITE_ACTIONS
    if unknown:
        raise ValueError(f"not a DynamoDB item action: {sorted(unknown)}")
    if {action for _, action in index_actions} - INDEX_ACTIONS:
        raise ValueError(f"an index is only queried or scanned: {sorted(index_actions)}")
    return TableAccess(frozenset(actions), index_actions)


# A money movement (`DynamoLedgerStore.post_transfer`): the transfer's Put and its wallets' Updates in one
# transaction, after reading the wallet (counters, where a movement has them, are declared per function).
_MOVEMENT = {
    "transfers": access(PUT),
    "wallets": access(GET, UPDATE),
}

FUNCTION_TABLES: dict[str, dict[str, TableAccess]] = {
    # Every route: terminals, staff console, residents' portal, partners, operators, platform operators.
    "api_handler": {
        # payments, refunds, grants, allocations, holds (post_transfer, create_hold, finish_hold);
        # get_transfer for replays; transfers_of_partner for partner statements (by_partner)
        "transfers": access(GET, PUT, indexes={"by_partner": (QUERY,)}),
        # transfers_of_municipality / transfers_of_mykey (reports, histories); written only by the projection
        "transfer_index": access(QUERY),
        # get_wallet, list_wallets (Query), wallets_of_municipality (reports: Scan), every movement (Update)
        "wallets": access(GET, QUERY, SCAN, UPDATE),
        # get_counter(s), movements' counters, move_counter, update_municipality's budget share
        "counters": access(GET, BATCH_GET, UPDATE),
        # get_municipality, list_municipalities (portal: Scan), update_municipality (programme change)
        "municipalities": access(GET, SCAN, UPDATE),
        # get_merchant(s), create_merchant, set_merchant_active, merchants_of_municipality
        "merchants": access(GET, BATCH_GET, PUT, UPDATE, indexes={"by_municipality": (QUERY,)}),
        # get_terminal, create_terminal, set_terminal_active, terminals_of_merchant
        "terminals": access(GET, PUT, UPDATE, indexes={"by_merchant": (QUERY,)}),
        # card reads, registration and binding (Put), status changes (Update), a payment's card guard
        # (ConditionCheck), cards_of_mykey (by_mykey, then BatchGet)
        "cards": access(GET, BATCH_GET, PUT, UPDATE, CONDITION_CHECK, indexes={"by_mykey": (QUERY,)}),
        # registration (Put), status and home municipality (Update), reads
        "mykeys": access(GET, PUT, UPDATE),
        # challenges and portal sign-in requests: issued, approved, taken once
        "challenges": access(GET, PUT, UPDATE, DELETE),
        # facility links: linked, looked up, listed, removed
        "facility_links": access(GET, PUT, QUERY, DELETE),
        # every service writes its audit record; staff read the log
        "audit_events": access(PUT, QUERY),
        "resident_sessions": access(GET, PUT, UPDATE, DELETE),
        # platform operators register partners (a plain Put); partners' signed reads look them up
        "partners": access(GET, PUT),
        "operators": access(GET, PUT),
        "transfer_programmes": access(GET, PUT),
        # transfer-outs: create_hold (Put), confirmation and rejection (Update), operator statements (Scan)
        "holds": access(GET, PUT, UPDATE, SCAN),
        # terminal, operator and partner request nonces, used once (conditional Put)
        "nonces": access(PUT),
        # a partner's reads of its own refusals: by transaction (keyed hash) and by day (by_partner)
        "conversion_rejections": access(GET, indexes={"by_partner": (QUERY,)}),
        "staff": access(GET, PUT, UPDATE, indexes={"by_municipality": (QUERY,)}),
        "staff_sessions": access(GET, PUT, UPDATE, DELETE),
        "approvals": access(GET, PUT, UPDATE, QUERY),
        # uploads (Put), approval and rejection of a batch (Update), listing and progress
        "grant_batches": access(GET, PUT, UPDATE, QUERY),
        # an upload's rows in chunks (BatchWrite), the report and pending chunks (Query)
        "grant_batch_chunks": access(BATCH_WRITE, QUERY),
    },
    # The daily expiry run (ledger.expire_due): wallets due by the sparse expiry index, one movement each.
    "expire_points": {
        **_MOVEMENT,
        "wallets": access(GET, UPDATE, indexes={"by_expiry": (QUERY,)}),
    },
    # One chunk of a bulk upload (grant_requests.post_chunk): each row a grant (ledger.grant), then the
    # chunk's results and the batch's progress in one transaction.
    "handle_grant_batches": {
        **_MOVEMENT,
        "transfers": access(GET, PUT),
        "counters": access(BATCH_GET, UPDATE),
        "municipalities": access(GET),
        "mykeys": access(GET),
        "grant_batches": access(GET, UPDATE),
        "grant_batch_chunks": access(GET, UPDATE),
    },
    # Partner conversions (conversions.process_message): a credit with its cap counters, or a rejection.
    "handle_partner_conversions": {
        **_MOVEMENT,
        "transfers": access(GET, PUT),
        "counters": access(UPDATE),
        "partners": access(GET),
        "conversion_rejections": access(GET, PUT),
        "mykeys": access(GET),
        "municipalities": access(GET),
    },
    # The reserve's daily job (conversions.move_expired_reserves): reserve wallets due, moved home.
    "move_expired_reserves": {
        **_MOVEMENT,
        "wallets": access(GET, UPDATE, indexes={"by_expiry": (QUERY,)}),
        "mykeys": access(GET),
        "municipalities": access(GET),
    },
    # The transfers table's stream consumer: writes the transfer lists, reads no table (the records carry
    # the transfers; the stream itself is granted by the role's ReadOwnStream statement).
    "project_transfers": {
        "transfer_index": access(BATCH_WRITE),
    },
    # The onboarding custom resource (onboarding.onboard_municipality): Create registers the programme,
    # its budget counters and first approver; Update changes the programme in one transaction.
    "register_tenant": {
        "municipalities": access(GET, PUT, UPDATE),
        "counters": access(PUT, BATCH_GET, UPDATE),
        "staff": access(GET, PUT),
        "audit_events": access(PUT),
    },
    # Transfer-outs past their deadline (transfer_outs.void_expired_holds): pending holds by deadline,
    # each voided with its points returned.
    "void_expired_holds": {
        **_MOVEMENT,
        "holds": access(GET, UPDATE, indexes={"pending_by_deadline": (QUERY,)}),
    },
}


def allows(function: str, table: str, action: str, index: str | None = None) -> bool:
    table_access = FUNCTION_TABLES.get(function, {}).get(table)
    return table_access is not None and table_access.allows(action, index)


def tables_written(function: str) -> list[str]:
    return sorted(table for table, table_access in FUNCTION_TABLES[function].items() if table_access.writes)


def tables_read_only(function: str) -> list[str]:
    return sorted(table for table, table_access in FUNCTION_TABLES[function].items() if not table_access.writes)
