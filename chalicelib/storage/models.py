"""PynamoDB models: the one place where every table, key, index and TTL is defined.

The local bootstrap (`chalicelib.storage.schema.create_tables`) and the CloudFormation resources in
`infrastructure/` are both generated from these classes, so the code, the local cloud and the deployed
stack cannot drift apart. Table names carry a stage prefix that is applied on first use
(`bind_models`), never at import time.

What each attribute holds, and why, is listed in `docs/DATA.md`. Nothing here stores a name, an address,
a birth date, an Individual Number or a certificate serial in clear.
"""
from __future__ import annotations

from pynamodb.attributes import (
    BooleanAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
)
from pynamodb.indexes import GlobalSecondaryIndex, IncludeProjection, KeysOnlyProjection, AllProjection
from pynamodb.models import Model

# Shards spread index writes so that no index partition is written by every transfer of a municipality
# (docs/CONTRACTS.md#hot-items). Readers query every shard.
MUNICIPALITY_INDEX_SHARDS = 10
EXPIRY_INDEX_SHARDS = 16


class ByPartnerIndex(GlobalSecondaryIndex):
    class Meta:
        index_name = "by_partner"
        projection = IncludeProjection(["kind", "amount", "municipality_code", "partner_txn_id", "partner_points", "campaign_code", "transfer_id"])

    partner_id = UnicodeAttribute(hash_key=True)
    posted_at = UnicodeAttribute(range_key=True)


class TransferModel(Model):
    """An immutable movement of points from a debit account to a credit account."""

    class Meta:
        # The table's name without the stage prefix; `bind_models` sets table_name on first use.
        base_name = "transfers"
        table_name = "transfers"
        billing_mode = "pay_per_request"
        # Every new transfer reaches `transfer_index` through this stream (chalicelib/storage/projection.py):
        # the lists by municipality and by resident cost no write in the movement's own transaction.
        stream_view_type = "NEW_IMAGE"

    transfer_id = UnicodeAttribute(hash_key=True)
    kind = UnicodeAttribute()
    debit_account = UnicodeAttribute()
    credit_account = UnicodeAttribute()
    amount = NumberAttribute()
    municipality_code = UnicodeAttribute()
    municipality_shard = UnicodeAttribute()
    mykey_id = UnicodeAttribute()
    posted_at = UnicodeAttribute()
    request_fingerprint = UnicodeAttribute()
    balance_after = NumberAttribute()
    lots = MapAttribute(default=dict)
    merchant_id = UnicodeAttribute(null=True)
    terminal_id = UnicodeAttribute(null=True)
    related_transfer_id = UnicodeAttribute(null=True)
    reason = UnicodeAttribute(null=True)
    staff_id = UnicodeAttribute(null=True)
    partner_id = UnicodeAttribute(null=True)
    partner_txn_id = UnicodeAttribute(null=True)
    partner_points = NumberAttribute(null=True)
    campaign_code = UnicodeAttribute(null=True)

    by_partner = ByPartnerIndex()


class TransferIndexModel(Model):
    """The transfers listed by municipality (sharded) and by resident, fed from the transfers table's stream.

    A global secondary index on the transfers table would be written inside every movement's transaction,
    at the transactional price (2 write units per index per transfer, measured on DynamoDB Local); these
    entries are written after the transaction, once per list, by `project_transfers`. Entries are
    immutable copies, so redelivered stream records simply write them again. Lists lag the ledger by the
    stream's delivery delay (about a second in AWS); balances never do.
    """

    class Meta:
        base_name = "transfer_index"
        table_name = "transfer_index"
        billing_mode = "pay_per_request"

    # `municipality#{code}#{shard}` or `mykey#{mykey_id}`.
    index_key = UnicodeAttribute(hash_key=True)
    # `{posted_at}#{transfer_id}`: time order, unique.
    sort_key = UnicodeAttribute(range_key=True)
    municipality_code = UnicodeAttribute()
    transfer = MapAttribute()


class ByExpiryIndex(GlobalSecondaryIndex):
    class Meta:
        index_name = "by_expiry"
        projection = KeysOnlyProjection()

    expiry_shard = UnicodeAttribute(hash_key=True)
    next_expires_on = UnicodeAttribute(range_key=True)


class WalletModel(Model):
    """One resident's points of one municipality, as expiry lots."""

    class Meta:
        # The table's name without the stage prefix; `bind_models` sets table_name on first use.
        base_name = "wallets"
        table_name = "wallets"
        billing_mode = "pay_per_request"

    mykey_id = UnicodeAttribute(hash_key=True)
    municipality_code = UnicodeAttribute(range_key=True)
    balance = NumberAttribute(default=0)
    lots = MapAttribute(default=dict)
    # Incremented by every write: the optimistic-concurrency guard of each transaction.
    version = NumberAttribute(default=0)
    next_expires_on = UnicodeAttribute(null=True)
    expiry_shard = UnicodeAttribute(null=True)
    updated_at = UnicodeAttribute(null=True)

    by_expiry = ByExpiryIndex()


class CounterModel(Model):
    """Numbers guarded by conditions: budget shards (`budget#<code>#<n>`) and refund totals (`refunded#<id>`)."""

    class Meta:
        # The table's name without the stage prefix; `bind_models` sets table_name on first use.
        base_name = "counters"
        table_name = "counters"
        billing_mode = "pay_per_request"

    counter_id = UnicodeAttribute(hash_key=True)
    value = NumberAttribute(default=0)


class MunicipalityModel(Model):
    """A municipality and its point programme."""

    class Meta:
        # The table's name without the stage prefix; `bind_models` sets table_name on first use.
        base_name = "municipalities"
        table_name = "municipalities"
        billing_mode = "pay_per_request"

    municipality_code = UnicodeAttribute(hash_key=True)
    name = UnicodeAttribute()
    point_name = UnicodeAttribute()
    expiry_rule = MapAttribute(default=dict)
    pin_free_limit = NumberAttribute()
    max_amount = NumberAttribute()
    budget_total = NumberAttribute()
    budget_shards = NumberAttribute()
    approval_threshold = NumberAttribute(null=True)
    active = BooleanAttribute(default=True)


class MerchantsByMunicipalityIndex(GlobalSecondaryIndex):
    class Meta:
        index_name = "by_municipality"
        projection = AllProjection()

    municipality_code = UnicodeAttribute(hash_key=True)
    merchant_id = UnicodeAttribute(range_key=True)


class MerchantModel(Model):
    """A shop, large store or public facility, and the municipalities whose points it accepts."""

    class Meta:
        # The table's name without the stage prefix; `bind_models` sets table_name on first use.
        base_name = "merchants"
        table_name = "merchants"
        billing_mode = "pay_per_request"

    merchant_id = UnicodeAttribute(hash_key=True)
    name = UnicodeAttribute()
    kind = UnicodeAttribute()
    municipality_code = UnicodeAttribute()
    accepted_municipalities = UnicodeSetAttribute(default=set)
    active = BooleanAttribute(default=True)
    registered_at = UnicodeAttribute(null=True)

    by_municipality = MerchantsByMunicipalityIndex()


class TerminalsByMerchantIndex(GlobalSecondaryIndex):
    class Meta:
        index_name = "by_merchant"
        projection = AllProjection()

    merchant_id = UnicodeAttribute(hash_key=True)
    terminal_id = UnicodeAttribute(range_key=True)


class TerminalModel(Model):
    """A shop or facility terminal and the Ed25519 public key that signs its requests."""

    class Meta:
        # The table's name without the stage prefix; `bind_models` sets table_name on first use.
        base_name = "terminals"
        table_name = "terminals"
        billing_mode = "pay_per_request"

    terminal_id = UnicodeAttribute(hash_key=True)
    merchant_id = UnicodeAttribute()
    public_key = UnicodeAttribute()
    active = BooleanAttribute(default=True)
    label = UnicodeAttribute(null=True)
    registered_at = UnicodeAttribute(null=True)

    by_merchant = TerminalsByMerchantIndex()


class CardsByMykeyIndex(GlobalSecondaryIndex):
    class Meta:
        index_name = "by_mykey"
        projection = KeysOnlyProjection()

    mykey_id = UnicodeAttribute(hash_key=True)


class CardModel(Model):
    """A card's user-authentication certificate, known only by a keyed hash, and its MyKey ID.

    Revoked certificates that were never registered are kept too (with no MyKey ID), so that they
    cannot be registered later.
    """

    class Meta:
        # The table's name without the stage prefix; `bind_models` sets table_name on first use.
        base_name = "cards"
        table_name = "cards"
        billing_mode = "pay_per_request"

    certificate_key = UnicodeAttribute(hash_key=True)
    mykey_id = UnicodeAttribute(null=True)
    status = UnicodeAttribute(default="active")
    registered_at = UnicodeAttribute()
    status_changed_at = UnicodeAttribute(null=True)

    by_mykey = CardsByMykeyIndex()


class MykeyModel(Model):
    """A MyKey ID: the one identifier every facility and programme knows the resident by."""

    class Meta:
        base_name = "mykeys"
        table_name = "mykeys"
        billing_mode = "pay_per_request"

    mykey_id = UnicodeAttribute(hash_key=True)
    status = UnicodeAttribute(default="active")
    home_municipality_code = UnicodeAttribute()
    registered_at = UnicodeAttribute()
    status_changed_at = UnicodeAttribute(null=True)


class ChallengeModel(Model):
    """A one-time server challenge for a card to sign (registration, resident sign-in, reinstatement)."""

    class Meta:
        base_name = "challenges"
        table_name = "challenges"
        billing_mode = "pay_per_request"

    challenge_id = UnicodeAttribute(hash_key=True)
    purpose = UnicodeAttribute()
    challenge = UnicodeAttribute()
    expires_at = NumberAttribute()  # Unix seconds; the table's TTL attribute
    # Portal sign-in only: the browser's secret (hashed) and, once the card has answered, whose it is.
    poll_secret_hash = UnicodeAttribute(null=True)
    approved_mykey_id = UnicodeAttribute(null=True)


class FacilityLinkModel(Model):
    """A facility's own local ID (library card number, museum member number) linked to a MyKey ID."""

    class Meta:
        base_name = "facility_links"
        table_name = "facility_links"
        billing_mode = "pay_per_request"

    mykey_id = UnicodeAttribute(hash_key=True)
    facility_id = UnicodeAttribute(range_key=True)
    local_id = UnicodeAttribute()
    linked_at = UnicodeAttribute()


class AuditEventModel(Model):
    """What a staff member or resident did to an identity, by whom and from which counter terminal."""

    class Meta:
        base_name = "audit_events"
        table_name = "audit_events"
        billing_mode = "pay_per_request"

    scope = UnicodeAttribute(hash_key=True)  # a municipality code, or "platform"
    event_key = UnicodeAttribute(range_key=True)  # occurred_at#event_id, so a scope's events sort by time
    action = UnicodeAttribute()
    actor = UnicodeAttribute()  # staff:<id>, resident (the MyKey ID itself), or system
    counter_terminal_id = UnicodeAttribute(null=True)
    mykey_id = UnicodeAttribute(null=True)
    details = MapAttribute(default=dict)


class ResidentSessionModel(Model):
    """A resident signed in with their card; known by the hash of its token, short-lived."""

    class Meta:
        base_name = "resident_sessions"
        table_name = "resident_sessions"
        billing_mode = "pay_per_request"

    session_key = UnicodeAttribute(hash_key=True)
    mykey_id = UnicodeAttribute()
    last_seen_at = NumberAttribute()
    expires_at = NumberAttribute()  # Unix seconds; the table's TTL attribute


class PartnerModel(Model):
    """A partner company converting its points into municipal points, and its agreement."""

    class Meta:
        base_name = "partners"
        table_name = "partners"
        billing_mode = "pay_per_request"

    partner_id = UnicodeAttribute(hash_key=True)
    name = UnicodeAttribute()
    public_key = UnicodeAttribute()  # the first of public_keys, for records written before rotation existed
    # One key, or two while the partner changes keys: a message or request signed by either verifies.
    public_keys = ListAttribute(of=UnicodeAttribute, null=True)
    result_queue = UnicodeAttribute()
    agreement = MapAttribute(default=dict)
    active = BooleanAttribute(default=True)


class RejectionsByPartnerIndex(GlobalSecondaryIndex):
    class Meta:
        index_name = "by_partner"
        projection = AllProjection()

    partner_id = UnicodeAttribute(hash_key=True)
    rejected_at = UnicodeAttribute(range_key=True)


class ConversionRejectionModel(Model):
    """A partner message refused for good, so that every redelivery gets the same answer.

    Keyed by a keyed hash of the transaction id (`conversions.partner_txn_key`), never the id itself: a
    refused id may be an Individual Number. The clear id is kept only when it passed validation.
    """

    class Meta:
        base_name = "conversion_rejections"
        table_name = "conversion_rejections"
        billing_mode = "pay_per_request"

    conversion_key = UnicodeAttribute(hash_key=True)  # partner_id#HMAC-SHA256(partner_id, partner_txn_id)
    partner_id = UnicodeAttribute(null=True)
    partner_txn_id = UnicodeAttribute(null=True)  # only when it passed validation
    reason = UnicodeAttribute()
    # SHA-256 of the message's canonical JSON: the same id with another body is a conflict, not a replay.
    message_fingerprint = UnicodeAttribute(null=True)
    rejected_at = UnicodeAttribute()
    by_partner = RejectionsByPartnerIndex()


class OperatorModel(Model):
    """A point-management company that receives transfer-outs into its programmes."""

    class Meta:
        base_name = "operators"
        table_name = "operators"
        billing_mode = "pay_per_request"

    operator_id = UnicodeAttribute(hash_key=True)
    name = UnicodeAttribute()
    public_key = UnicodeAttribute()
    request_queue = UnicodeAttribute()
    active = BooleanAttribute(default=True)


class TransferProgrammeModel(Model):
    """A destination of transfer-outs (a shopping street's point card, a prepaid card) of one municipality."""

    class Meta:
        base_name = "transfer_programmes"
        table_name = "transfer_programmes"
        billing_mode = "pay_per_request"

    programme_id = UnicodeAttribute(hash_key=True)
    municipality_code = UnicodeAttribute()
    operator_id = UnicodeAttribute()
    name = UnicodeAttribute()
    account_pattern = UnicodeAttribute()
    check_digit = UnicodeAttribute()
    hold_seconds = NumberAttribute()
    active = BooleanAttribute(default=True)


class PendingHoldsIndex(GlobalSecondaryIndex):
    class Meta:
        index_name = "pending_by_deadline"
        projection = KeysOnlyProjection()

    pending_shard = UnicodeAttribute(hash_key=True)
    deadline = NumberAttribute(range_key=True)


class HoldModel(Model):
    """A transfer-out waiting for its operator: points held in the municipality's pending account."""

    class Meta:
        base_name = "holds"
        table_name = "holds"
        billing_mode = "pay_per_request"

    hold_id = UnicodeAttribute(hash_key=True)
    state = UnicodeAttribute()  # pending, posted or voided
    municipality_code = UnicodeAttribute()
    mykey_id = UnicodeAttribute()
    amount = NumberAttribute()
    lots = MapAttribute(default=dict)
    programme_id = UnicodeAttribute()
    operator_id = UnicodeAttribute()
    destination_account = UnicodeAttribute()
    deadline = NumberAttribute()
    created_at = UnicodeAttribute()
    finished_at = UnicodeAttribute(null=True)
    outcome_reason = UnicodeAttribute(null=True)
    # Set only while pending: the sparse index the expiry job reads.
    pending_shard = UnicodeAttribute(null=True)

    pending_by_deadline = PendingHoldsIndex()


class NonceModel(Model):
    """A terminal request nonce already used; kept only until replay is impossible, then expired by TTL."""

    class Meta:
        # The table's name without the stage prefix; `bind_models` sets table_name on first use.
        base_name = "nonces"
        table_name = "nonces"
        billing_mode = "pay_per_request"

    nonce_key = UnicodeAttribute(hash_key=True)
    expires_at = NumberAttribute()  # Unix seconds; the table's TTL attribute


class StaffByMunicipalityIndex(GlobalSecondaryIndex):
    class Meta:
        index_name = "by_municipality"
        # Never the password hash: listing staff must not copy it anywhere.
        projection = IncludeProjection(["role", "active", "created_at"])

    municipality_code = UnicodeAttribute(hash_key=True)
    staff_id = UnicodeAttribute(range_key=True)


class StaffModel(Model):
    """A municipal staff account, scoped to one municipality with one role."""

    class Meta:
        # The table's name without the stage prefix; `bind_models` sets table_name on first use.
        base_name = "staff"
        table_name = "staff"
        billing_mode = "pay_per_request"

    staff_id = UnicodeAttribute(hash_key=True)
    municipality_code = UnicodeAttribute()
    role = UnicodeAttribute()
    password_hash = UnicodeAttribute()
    active = BooleanAttribute(default=True)
    created_at = UnicodeAttribute(null=True)

    by_municipality = StaffByMunicipalityIndex()


class StaffSessionModel(Model):
    """A signed-in staff session, known by the hash of its token; ends on inactivity, sign-out or TTL.

    The same table counts each staff id's recent sign-in attempts, in an item keyed
    `sign-in-attempts#<staff id>` (never a token hash, which is 64 hex digits) holding only the
    `attempts`, `window_started_at`, `locked_until` and `expires_at` attributes: it expires by the
    same TTL, and the functions that sign staff in already read and write this table.
    """

    class Meta:
        # The table's name without the stage prefix; `bind_models` sets table_name on first use.
        base_name = "staff_sessions"
        table_name = "staff_sessions"
        billing_mode = "pay_per_request"

    session_key = UnicodeAttribute(hash_key=True)
    staff_id = UnicodeAttribute()
    municipality_code = UnicodeAttribute()
    role = UnicodeAttribute()
    counter_terminal_id = UnicodeAttribute(null=True)
    last_seen_at = NumberAttribute()
    expires_at = NumberAttribute()  # Unix seconds; the table's TTL attribute
    # Only on a `sign-in-attempts#` item (written by update, which does not require the session's attributes).
    attempts = NumberAttribute(null=True)
    window_started_at = NumberAttribute(null=True)  # Unix seconds of the run's first attempt
    locked_until = NumberAttribute(null=True)  # Unix seconds; present once the run reached the limit


class ApprovalModel(Model):
    """A grant (or a bulk-grant upload) above the programme's threshold, waiting for a second staff member."""

    class Meta:
        base_name = "approvals"
        table_name = "approvals"
        billing_mode = "pay_per_request"

    municipality_code = UnicodeAttribute(hash_key=True)
    approval_id = UnicodeAttribute(range_key=True)  # the grant_id, or the batch_id of an upload
    kind = UnicodeAttribute()  # grant or grant_batch
    state = UnicodeAttribute()  # pending, approved or rejected
    amount = NumberAttribute()
    request = MapAttribute(default=dict)  # the grant as requested (for a batch: its file name and row count)
    request_fingerprint = UnicodeAttribute()
    requested_by = UnicodeAttribute()
    requested_at = UnicodeAttribute()
    decided_by = UnicodeAttribute(null=True)
    decided_at = UnicodeAttribute(null=True)
    decision_note = UnicodeAttribute(null=True)


class GrantBatchModel(Model):
    """One uploaded bulk-grant CSV: its validation outcome and the progress of posting its rows."""

    class Meta:
        base_name = "grant_batches"
        table_name = "grant_batches"
        billing_mode = "pay_per_request"

    municipality_code = UnicodeAttribute(hash_key=True)
    batch_id = UnicodeAttribute(range_key=True)  # derived from the file's SHA-256: the same file is the same batch
    file_name = UnicodeAttribute()
    content_sha256 = UnicodeAttribute()
    encoding = UnicodeAttribute()
    uploaded_by = UnicodeAttribute()
    uploaded_at = UnicodeAttribute()
    status = UnicodeAttribute()  # invalid, awaiting_approval, queued, completed or rejected
    total_rows = NumberAttribute()
    valid_rows = NumberAttribute()
    invalid_rows = NumberAttribute()
    total_amount = NumberAttribute()
    chunk_count = NumberAttribute()
    posted_rows = NumberAttribute(default=0)
    already_posted_rows = NumberAttribute(default=0)
    failed_rows = NumberAttribute(default=0)
    posted_amount = NumberAttribute(default=0)
    errors = UnicodeAttribute(null=True)  # JSON list of row errors, at most MAX_REPORTED_ERRORS
    approved_by = UnicodeAttribute(null=True)
    queued_at = UnicodeAttribute(null=True)
    completed_at = UnicodeAttribute(null=True)


class GrantBatchChunkModel(Model):
    """Up to a few hundred validated rows of an upload, posted together by one queue message."""

    class Meta:
        base_name = "grant_batch_chunks"
        table_name = "grant_batch_chunks"
        billing_mode = "pay_per_request"

    batch_id = UnicodeAttribute(hash_key=True)
    chunk_number = NumberAttribute(range_key=True)
    rows = UnicodeAttribute()  # JSON list of [row, reference, mykey_id, amount, reason, expires_on]
    state = UnicodeAttribute()  # pending or done
    results = UnicodeAttribute(null=True)  # JSON list of [row, outcome, error_code], once done


ALL_MODELS: tuple[type[Model], ...] = (
    TransferModel,
    TransferIndexModel,
    WalletModel,
    CounterModel,
    MunicipalityModel,
    MerchantModel,
    TerminalModel,
    CardModel,
    MykeyModel,
    ChallengeModel,
    FacilityLinkModel,
    AuditEventModel,
    ResidentSessionModel,
    PartnerModel,
    ConversionRejectionModel,
    OperatorModel,
    TransferProgrammeModel,
    HoldModel,
    NonceModel,
    StaffModel,
    StaffSessionModel,
    ApprovalModel,
    GrantBatchModel,
    GrantBatchChunkModel,
)

# Tables whose items expire by themselves.
TTL_ATTRIBUTES = {
    "nonces": "expires_at",
    "staff_sessions": "expires_at",
    "challenges": "expires_at",
    "resident_sessions": "expires_at",
}


def bind_models(table_prefix: str, region: str) -> None:
    """Point every model at its stage's table. Called once by the cached store getter."""
    for model in ALL_MODELS:
        model.Meta.table_name = f"{table_prefix}{model.Meta.base_name}"
        model.Meta.region = region
        # A model caches its connection; drop it so a new prefix or endpoint takes effect.
        model._connection = None
        for index in model._indexes.values():
            index.Meta.model = model
