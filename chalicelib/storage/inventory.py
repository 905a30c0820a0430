"""The data inventory: every attribute of every table, and why the platform keeps it.

`docs/DATA.md` is generated from the PynamoDB models joined with the purposes below
(`python -m chalicelib.storage.inventory > docs/DATA.md`, or `make data-inventory`). A test fails when a
model gains an attribute this inventory does not explain, when the document is stale, or when any table
would hold a name, an address, a birth date, an Individual Number or a certificate serial of a resident.
"""
from __future__ import annotations

from chalicelib.storage.models import ALL_MODELS, TTL_ATTRIBUTES

TABLES: dict[str, dict] = {
    "approvals": {
        "why": "Two-person approval: grants and bulk uploads above the programme's threshold wait here for a second staff member.",
        "attributes": {
            "municipality_code": "Whose programme.",
            "approval_id": "The grant_id of a single grant, or the batch_id of an upload.",
            "kind": "grant or grant_batch.",
            "state": "pending, approved or rejected.",
            "amount": "Points the grant or the whole upload would issue.",
            "request": "The grant as requested (MyKey ID, amount, reason, expiry), or the upload's file name and rows.",
            "request_fingerprint": "Tells a repeated request from a different one with the same id.",
            "requested_by": "Staff id of the requester.",
            "requested_at": "When it was requested (UTC).",
            "decided_by": "Staff id of the approver or rejecter (never the requester).",
            "decided_at": "When it was decided (UTC).",
            "decision_note": "The rejecter's reason, as typed (Individual Numbers refused).",
        },
    },
    "grant_batches": {
        "why": "Bulk-grant uploads: their validation report and the progress of posting.",
        "attributes": {
            "municipality_code": "Whose programme.",
            "batch_id": "Derived from the file's SHA-256, so uploading the same file again finds the same batch.",
            "file_name": "The uploaded file's name, shown in the console.",
            "content_sha256": "SHA-256 of the uploaded bytes.",
            "encoding": "How the file was decoded (utf-8, utf-8-sig or cp932).",
            "uploaded_by": "Staff id of the uploader.",
            "uploaded_at": "When it was uploaded (UTC).",
            "status": "invalid, awaiting_approval, queued, completed or rejected.",
            "total_rows": "Data rows in the file.",
            "valid_rows": "Rows that passed validation.",
            "invalid_rows": "Rows refused by validation.",
            "total_amount": "Points the valid rows would issue.",
            "chunk_count": "How many chunks (queue messages) the rows were split into.",
            "posted_rows": "Rows granted by this upload.",
            "already_posted_rows": "Rows whose application number had been granted by an earlier upload.",
            "failed_rows": "Rows refused while posting (unknown MyKey ID, budget).",
            "posted_amount": "Points granted by this upload.",
            "errors": "The first row errors (row, column, code, message), for the report.",
            "approved_by": "Staff id of the second person, when the upload needed approval.",
            "queued_at": "When posting started.",
            "completed_at": "When the last chunk was posted.",
        },
    },
    "grant_batch_chunks": {
        "why": "The validated rows of an upload, a few hundred per item, each posted by one queue message.",
        "attributes": {
            "batch_id": "The upload.",
            "chunk_number": "Position in the upload.",
            "rows": "Row number, application number, MyKey ID, points, reason, expiry — only the columns the upload format has.",
            "state": "pending or done.",
            "results": "Per row: granted, already granted or the refusal code.",
        },
    },
    "transfers": {
        "why": "The immutable ledger: every movement of points, the first answer to a repeated request, reports.",
        "attributes": {
            "transfer_id": "The client's idempotency key (a UUID the terminal or staff tool generated).",
            "kind": "grant, payment, refund, expire, conversion, reserve_allocation, transfer_out_hold, transfer_out, transfer_out_void.",
            "debit_account": "The account points leave (wallet, issuance, merchant, partner payable, reserve, pending).",
            "credit_account": "The account points reach.",
            "amount": "Points moved (1 point = 1 yen).",
            "municipality_code": "Whose points they are.",
            "municipality_shard": "Which of the municipality's list partitions in transfer_index lists it (no hot items).",
            "mykey_id": "The resident's MyKey ID, for their own history.",
            "posted_at": "When the transfer was posted (UTC).",
            "request_fingerprint": "SHA-256 of the request body: tells a retry from a different request with the same id.",
            "balance_after": "The wallet's usable balance after this transfer, returned again on a retry.",
            "lots": "Points moved per expiry date, so refunds give back the right lots.",
            "merchant_id": "The shop or facility of a payment or refund.",
            "terminal_id": "The terminal that asked, for settlement and disputes.",
            "related_transfer_id": "The payment a refund belongs to, or the hold a transfer-out posting or void ends.",
            "reason": "The grant's reason as staff typed it (Individual Numbers refused).",
            "staff_id": "The staff member who granted.",
            "partner_id": "The partner of a conversion: whose payable, and its statements.",
            "partner_txn_id": "The partner's own transaction id, for reconciliation.",
            "partner_points": "The partner's points converted, as the partner counts them.",
            "campaign_code": "The campaign whose rate applied, if any.",
        },
    },
    "transfer_index": {
        "why": "The transfers listed by municipality (reports) and by resident (their own history), copied from the "
               "transfers table's stream after each movement commits, so that no index is written inside the movement's "
               "transaction.",
        "attributes": {
            "index_key": "Which list: municipality#{code}#{shard} (sharded: no hot partition) or mykey#{MyKey ID}.",
            "sort_key": "posted_at#transfer_id: the list's time order.",
            "municipality_code": "Whose points, to narrow a resident's list to one municipality.",
            "transfer": "A copy of the transfer record as posted (the attributes of `transfers` above).",
        },
    },
    "wallets": {
        "why": "What each resident holds per municipality.",
        "attributes": {
            "mykey_id": "The holder.",
            "municipality_code": "Whose points, or reserve for the resident's reserve account.",
            "balance": "Points held (usable and not yet expired by the job).",
            "lots": "Points per expiry date.",
            "version": "Optimistic-concurrency guard of every wallet write.",
            "next_expires_on": "Earliest expiry date, key of the sparse expiry index.",
            "expiry_shard": "Spreads the expiry index over partitions.",
            "updated_at": "Last change, for operators.",
        },
    },
    "counters": {
        "why": "Numbers guarded by conditions: budget shards and refund totals per payment.",
        "attributes": {
            "counter_id": "budget#<code>#<shard> or refunded#<transfer_id>.",
            "value": "Budget left in the shard, or points refunded so far.",
        },
    },
    "municipalities": {
        "why": "Each municipality's point programme.",
        "attributes": {
            "municipality_code": "全国地方公共団体コード with check digit.",
            "name": "The municipality's name (an organisation, not a person).",
            "point_name": "The programme's name shown to residents.",
            "expiry_rule": "How long granted points stay usable.",
            "pin_free_limit": "Above this amount a payment needs the card's PIN signature.",
            "max_amount": "Largest single operation the programme allows.",
            "budget_total": "The programme's budget.",
            "budget_shards": "How many counters the budget is split over.",
            "approval_threshold": "Grants above this many points wait for a second staff member's approval.",
            "active": "Whether the programme runs.",
        },
    },
    "merchants": {
        "why": "Where points can be spent, and which facilities keep local IDs.",
        "attributes": {
            "merchant_id": "The shop's or facility's id.",
            "name": "The shop's or facility's name (a business, shown on receipts and history).",
            "kind": "shop, large_store, public_facility or shopping_district.",
            "municipality_code": "Where it is.",
            "accepted_municipalities": "Whose points it accepts.",
            "active": "Whether it may take payments.",
            "registered_at": "When staff registered it.",
        },
    },
    "terminals": {
        "why": "Verifying terminal request signatures.",
        "attributes": {
            "terminal_id": "The terminal's id.",
            "merchant_id": "The shop or facility it belongs to.",
            "public_key": "Its Ed25519 public key (public data).",
            "active": "Disabled terminals are refused.",
            "label": "A name the shop gives it.",
            "registered_at": "When staff registered its key.",
        },
    },
    "cards": {
        "why": "Which MyKey ID a card belongs to, and whether it may be used. The certificate serial itself is never stored.",
        "attributes": {
            "certificate_key": "HMAC-SHA-256, with a platform secret, of the issuing CA and the serial.",
            "mykey_id": "The MyKey ID; empty for a revoked certificate that was never registered.",
            "status": "active, suspended, revoked or superseded (renewed).",
            "registered_at": "When the card was bound.",
            "status_changed_at": "When the status last changed.",
        },
    },
    "mykeys": {
        "why": "The ID table of the My Key Platform.",
        "attributes": {
            "mykey_id": "8 characters from the MyKey ID alphabet (docs/CONTRACTS.md#mykey-id).",
            "status": "active or suspended.",
            "home_municipality_code": "Receives unallocated partner conversions.",
            "registered_at": "When it was issued.",
            "status_changed_at": "When it was last suspended or reinstated.",
        },
    },
    "challenges": {
        "why": "One-time challenges a card signs to prove itself; deleted on use or by TTL after 5 minutes.",
        "attributes": {
            "challenge_id": "Its id.",
            "purpose": "registration, resident_sign_in, reinstatement or portal_sign_in.",
            "challenge": "32 random bytes.",
            "expires_at": "TTL.",
            "poll_secret_hash": "Portal sign-in: SHA-256 of the secret only the browser that asked holds.",
            "approved_mykey_id": "Portal sign-in: whose card answered, until the browser collects its session.",
        },
    },
    "facility_links": {
        "why": "A facility's own local ID linked to a MyKey ID (one card opens every facility). No visit is recorded.",
        "attributes": {
            "mykey_id": "The resident.",
            "facility_id": "The library, museum or shopping district (a merchant id).",
            "local_id": "The facility's own member number.",
            "linked_at": "When it was linked.",
        },
    },
    "audit_events": {
        "why": "Who changed an identity: registrations, links, suspensions, reinstatements, feed imports.",
        "attributes": {
            "scope": "A municipality code, or platform.",
            "event_key": "Time and a random suffix, so events sort by time.",
            "action": "What was done.",
            "actor": "staff:<id>, resident, terminal:<id>.",
            "counter_terminal_id": "The shared counter terminal the staff member signed in on.",
            "mykey_id": "Whose identity changed.",
            "details": "Counts and reasons (no personal data).",
        },
    },
    "resident_sessions": {
        "why": "A resident signed in with the card; gone after 5 idle minutes, 30 minutes at most, or sign-out.",
        "attributes": {
            "session_key": "SHA-256 of the session token.",
            "mykey_id": "Who signed in.",
            "last_seen_at": "For the inactivity timeout.",
            "expires_at": "TTL.",
        },
    },
    "partners": {
        "why": "Partner companies converting their points, and their agreements.",
        "attributes": {
            "partner_id": "The partner's id.",
            "name": "The company's name (an organisation).",
            "public_key": "Ed25519 public key that signs its messages (public data); the first of public_keys.",
            "public_keys": "One or, during a key change, two Ed25519 public keys, either of which verifies (public data).",
            "result_queue": "Where its results go.",
            "agreement": "Municipalities, rates, rounding, campaigns and caps.",
            "active": "Inactive partners' messages are refused.",
        },
    },
    "conversion_rejections": {
        "why": "A partner message refused after its signature checked out, so every redelivery gets the same answer.",
        "attributes": {
            "conversion_key": "partner id and an HMAC of the partner's transaction id under the card-hash secret: "
                              "a refused id may be an Individual Number, so the id itself is never a key.",
            "partner_id": "The partner (for its day listing, index by_partner).",
            "partner_txn_id": "The partner's transaction id, only when it passed validation (no Individual Number); "
                              "else absent.",
            "reason": "The reason reported to the partner.",
            "message_fingerprint": "SHA-256 of the message's canonical JSON: the same id with another message is a conflict.",
            "rejected_at": "When (UTC); the Japan date of it is the day the partner's listing shows it on.",
        },
    },
    "operators": {
        "why": "Point-management companies receiving transfer-outs.",
        "attributes": {
            "operator_id": "The company's id.",
            "name": "The company's name (an organisation).",
            "public_key": "Ed25519 public key that signs its confirmations (public data).",
            "request_queue": "Where transfer-out requests are sent.",
            "active": "Inactive operators are refused.",
        },
    },
    "transfer_programmes": {
        "why": "Destinations of transfer-outs (a shopping street's point card, a prepaid card) per municipality.",
        "attributes": {
            "programme_id": "The programme's id.",
            "municipality_code": "Whose points may go there.",
            "operator_id": "The company that runs it.",
            "name": "The programme's name (shown to residents).",
            "account_pattern": "The format of its account numbers.",
            "check_digit": "The check-digit rule of its account numbers (luhn or none).",
            "hold_seconds": "How long a hold waits for the operator before it is voided.",
            "active": "Inactive programmes are refused.",
        },
    },
    "holds": {
        "why": "Transfer-outs waiting for, or answered by, their operator: the two-phase state.",
        "attributes": {
            "hold_id": "The terminal's transfer id of the request.",
            "state": "pending, posted or voided.",
            "municipality_code": "Whose points.",
            "mykey_id": "The resident.",
            "amount": "Points held.",
            "lots": "Points per expiry date, returned as they were if voided.",
            "programme_id": "The destination programme.",
            "operator_id": "The company that must confirm.",
            "destination_account": "The destination account number (a card or membership number, not personal data of the platform's own).",
            "deadline": "When an unconfirmed hold is voided (Unix seconds).",
            "created_at": "When it was held.",
            "finished_at": "When it was posted or voided.",
            "outcome_reason": "Why it was voided (rejection reason, deadline).",
            "pending_shard": "Key of the sparse index of pending holds by deadline.",
        },
    },
    "nonces": {
        "why": "Refusing a replayed terminal request; the only trace a signed request leaves, deleted by TTL.",
        "attributes": {
            "nonce_key": "terminal id and nonce.",
            "expires_at": "TTL, ten minutes after the request's timestamp.",
        },
    },
    "staff": {
        "why": "Staff sign-in, scoped to one municipality or the platform.",
        "attributes": {
            "staff_id": "The staff member's id.",
            "municipality_code": "Their municipality, or platform.",
            "role": "viewer, operator, approver, call_centre or platform_operator.",
            "password_hash": "scrypt hash.",
            "active": "Disabled accounts cannot sign in.",
            "created_at": "When the account was created.",
        },
    },
    "staff_sessions": {
        "why": ("Signed-in staff; ends on sign-out, inactivity or TTL. Also each staff id's recent sign-in attempts "
                "(key `sign-in-attempts#<staff id>`, the id as typed), for the lockout after five failures in a row; "
                "deleted by a successful sign-in or by TTL."),
        "attributes": {
            "session_key": "SHA-256 of the session token, or sign-in-attempts# and the staff id as typed.",
            "staff_id": "Who signed in.",
            "municipality_code": "Their scope.",
            "role": "Their role.",
            "counter_terminal_id": "The shared counter terminal, for the audit trail.",
            "last_seen_at": "For the inactivity timeout.",
            "expires_at": "TTL.",
            "attempts": "Sign-in attempts in the current run (counted before the password is checked).",
            "window_started_at": "When the run's first attempt was made; a run older than 15 minutes starts again.",
            "locked_until": "When the lockout ends (set when the run reaches the limit).",
        },
    },
}


def model_attributes() -> dict[str, list[tuple[str, str, str]]]:
    """Each table's attributes as the models define them: (name, DynamoDB type, key role)."""
    tables = {}
    for model in ALL_MODELS:
        rows = []
        for name, attribute in model.get_attributes().items():
            role = "partition key" if attribute.is_hash_key else "sort key" if attribute.is_range_key else ""
            if TTL_ATTRIBUTES.get(model.Meta.base_name) == name:
                role = "TTL"
            rows.append((name, attribute.attr_type, role))
        tables[model.Meta.base_name] = rows
    return tables


def render_markdown() -> str:
    lines = [
        "# What the platform stores, and why",
        "",
        "Generated from `chalicelib/storage/models.py` and `chalicelib/storage/inventory.py` by",
        "`make data-inventory`; a test keeps this file current. The platform stores **no name, address or",
        "birth date of a resident, no Individual Number (個人番号) and no certificate serial in clear**.",
        "Lookups and identity checks write nothing except the spent nonce of their signed request.",
        "",
    ]
    for table, rows in model_attributes().items():
        entry = TABLES[table]
        lines += [f"## `{table}`", "", entry["why"], "", "| attribute | type | key | why |", "|---|---|---|---|"]
        for name, attribute_type, role in rows:
            lines.append(f"| `{name}` | {attribute_type} | {role} | {entry['attributes'][name]} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(render_markdown(), end="")
