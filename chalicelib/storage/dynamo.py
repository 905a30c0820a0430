"""The ledger store on DynamoDB, through the PynamoDB models.

Every money movement is one `TransactWriteItems` (docs/CONTRACTS.md#transactions): the transfer record's Put, guarded by
`attribute_not_exists` (the idempotency guard), the wallet's Update, guarded by its version and by
`balance >= :amount` when points leave it, and any counters (budget shards, refund totals) with their
own guards. When DynamoDB cancels the transaction, its cancellation reasons say which guard failed, and
the item returned with `ALL_OLD` tells the service what it found, so no extra read is needed to retry
or to answer a replay.
"""
from __future__ import annotations

import dataclasses
import time
import zlib
from typing import Iterable, Iterator

from pynamodb.connection import Connection
from pynamodb.exceptions import PutError, TransactWriteError
from pynamodb.transactions import TransactWrite

from chalicelib.services import ports
from chalicelib.storage.conditional import save_if_absent
from chalicelib.storage.identity import read_card, read_mykey, write_card, write_mykey
from chalicelib.storage.models import (
    EXPIRY_INDEX_SHARDS,
    MUNICIPALITY_INDEX_SHARDS,
    CardModel,
    ConversionRejectionModel,
    CounterModel,
    HoldModel,
    MerchantModel,
    MunicipalityModel,
    NonceModel,
    OperatorModel,
    PartnerModel,
    TerminalModel,
    TransferProgrammeModel,
    TransferIndexModel,
    TransferModel,
    WalletModel,
)

_ALL_OLD = "ALL_OLD"
# Reasons DynamoDB gives for a cancelled transaction that a plain retry can clear.
_TRANSIENT_REASONS = {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"}


def municipality_shard(municipality_code: str, transfer_id: str) -> str:
    return f"{municipality_code}#{zlib.crc32(transfer_id.encode()) % MUNICIPALITY_INDEX_SHARDS}"


def expiry_shard(mykey_id: str) -> str:
    return str(zlib.crc32(mykey_id.encode()) % EXPIRY_INDEX_SHARDS)


def _plain(value):
    """A MapAttribute's content as plain Python (numbers as int where whole), for services."""
    if hasattr(value, "as_dict"):
        value = value.as_dict()
    if isinstance(value, dict):
        return {key: _plain(child) for key, child in value.items()}
    if isinstance(value, list):
        return [_plain(child) for child in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _municipality_from_model(item: MunicipalityModel) -> ports.Municipality:
    return ports.Municipality(
        code=item.municipality_code,
        name=item.name,
        point_name=item.point_name,
        expiry_rule=_plain(item.expiry_rule),
        pin_free_limit=int(item.pin_free_limit),
        max_amount=int(item.max_amount),
        budget_total=int(item.budget_total),
        budget_shards=int(item.budget_shards),
        **({"approval_threshold": int(item.approval_threshold)} if item.approval_threshold is not None else {}),
    )


def _hold(item) -> dict:
    return {
        "hold_id": item.hold_id, "state": item.state, "municipality_code": item.municipality_code,
        "mykey_id": item.mykey_id, "amount": int(item.amount), "lots": _lots_from_item(item.lots),
        "programme_id": item.programme_id, "operator_id": item.operator_id,
        "destination_account": item.destination_account, "deadline": int(item.deadline), "created_at": item.created_at,
        "finished_at": item.finished_at, "outcome_reason": item.outcome_reason,
    }


def _lots_from_item(raw) -> dict[str, int]:
    data = raw.as_dict() if hasattr(raw, "as_dict") else (raw or {})
    return {str(day): int(points) for day, points in data.items()}


_TRANSFER_FIELDS = tuple(field.name for field in dataclasses.fields(ports.Transfer))


def _transfer_from_model(item: TransferModel) -> ports.Transfer:
    values = {name: getattr(item, name) for name in _TRANSFER_FIELDS}
    # DynamoDB numbers come back as floats or Decimals; points are integers.
    values.update(amount=int(item.amount), balance_after=int(item.balance_after), lots=_lots_from_item(item.lots))
    return ports.Transfer(**values)


def _wallet_from_model(item: WalletModel) -> ports.Wallet:
    return ports.Wallet(
        mykey_id=item.mykey_id,
        municipality_code=item.municipality_code,
        balance=int(item.balance or 0),
        lots=_lots_from_item(item.lots),
        version=int(item.version or 0),
    )


class DynamoLedgerStore:
    """`LedgerStore` on DynamoDB; one instance serves a Lambda container.

    With `cache_seconds > 0` (production) the container remembers what every payment would otherwise
    read again (see `chalicelib.storage.cache`): programme, merchant and terminal settings for that many
    seconds, card bindings and the last wallet states it saw. None of this can move money wrongly: the
    payment's transaction checks the card's status and the wallet's version itself. Tests build the store
    without caches unless they test them.
    """

    def __init__(self, region: str, cache_seconds: float = 0, cache_entries: int = 10_000):
        from chalicelib.storage.cache import ContainerCache

        self._connection = Connection(region=region)
        self._cache = ContainerCache(cache_seconds, cache_entries)

    # -- reads ---------------------------------------------------------------------------------------

    def get_municipality(self, code: str) -> ports.Municipality | None:
        return self._cache.setting(("municipality", code), lambda: self._read_municipality(code))

    def _read_municipality(self, code: str) -> ports.Municipality | None:
        item = self._get(MunicipalityModel, code)
        return _municipality_from_model(item) if item is not None and item.active else None

    def wallet_for_update(self, mykey_id: str, municipality_code: str) -> tuple[ports.Wallet, bool]:
        known = self._cache.wallet(mykey_id, municipality_code)
        if known is not None:
            return known, True
        return self.get_wallet(mykey_id, municipality_code), False

    def card_for_payment(self, certificate_key: str) -> tuple[ports.Card | None, bool]:
        known = self._cache.card(certificate_key)
        if known is not None:
            return known, True
        card = self.get_card(certificate_key)
        if card is not None and card.status == ports.CARD_ACTIVE and card.mykey_id:
            self._cache.remember_card(card)
        return card, False

    def forget_card(self, certificate_key: str) -> None:
        self._cache.forget_card(certificate_key)

    def list_municipalities(self) -> list[ports.Municipality]:
        # A small table (one item per municipality on the platform): a scan is the right read.
        return sorted((_municipality_from_model(item) for item in MunicipalityModel.scan() if item.active),
                      key=lambda municipality: municipality.code)

    def get_merchant(self, merchant_id: str) -> ports.Merchant | None:
        def read():
            item = self._get(MerchantModel, merchant_id)
            return self._merchant(item) if item else None

        return self._cache.setting(("merchant", merchant_id), read)

    def get_merchants(self, merchant_ids: Iterable[str]) -> dict[str, ports.Merchant]:
        keys = sorted(set(merchant_ids))
        if not keys:
            return {}
        return {item.merchant_id: self._merchant(item) for item in MerchantModel.batch_get(keys)}

    @staticmethod
    def _merchant(item: MerchantModel) -> ports.Merchant:
        return ports.Merchant(
            merchant_id=item.merchant_id,
            name=item.name,
            kind=item.kind,
            municipality_code=item.municipality_code,
            accepted_municipalities=frozenset(item.accepted_municipalities or ()),
            active=bool(item.active),
        )

    def get_terminal(self, terminal_id: str) -> ports.Terminal | None:
        return self._cache.setting(("terminal", terminal_id), lambda: self._read_terminal(terminal_id))

    def _read_terminal(self, terminal_id: str) -> ports.Terminal | None:
        item = self._get(TerminalModel, terminal_id)
        if item is None:
            return None
        return ports.Terminal(
            terminal_id=item.terminal_id,
            merchant_id=item.merchant_id,
            public_key=item.public_key,
            active=bool(item.active),
            label=item.label,
        )

    def get_card(self, certificate_key: str) -> ports.Card | None:
        return read_card(certificate_key)

    def mykey_exists(self, mykey_id: str) -> bool:
        return read_mykey(mykey_id) is not None

    def get_wallet(self, mykey_id: str, municipality_code: str) -> ports.Wallet:
        item = self._get(WalletModel, mykey_id, municipality_code, consistent_read=True)
        if item is None:
            return ports.Wallet(mykey_id=mykey_id, municipality_code=municipality_code)
        wallet = _wallet_from_model(item)
        self._cache.remember_wallet(wallet)
        return wallet

    def list_wallets(self, mykey_id: str) -> list[ports.Wallet]:
        return [_wallet_from_model(item) for item in WalletModel.query(mykey_id, consistent_read=True)]

    def wallets_of_municipality(self, municipality_code: str) -> Iterator[ports.Wallet]:
        # Reports and reconciliation only: a full scan, never on a payment's path.
        for item in WalletModel.scan(WalletModel.municipality_code == municipality_code, consistent_read=True):
            yield _wallet_from_model(item)

    def wallets_due_for_expiry(self, before_date: str) -> Iterator[tuple[str, str]]:
        for shard in range(EXPIRY_INDEX_SHARDS):
            for item in WalletModel.by_expiry.query(str(shard), WalletModel.next_expires_on < before_date):
                yield item.mykey_id, item.municipality_code

    def get_transfer(self, transfer_id: str) -> ports.Transfer | None:
        item = self._get(TransferModel, transfer_id, consistent_read=True)
        return _transfer_from_model(item) if item else None

    def get_counter(self, counter_id: str) -> int:
        item = self._get(CounterModel, counter_id, consistent_read=True)
        return int(item.value) if item else 0

    def get_counters(self, counter_ids: list[str]) -> dict[str, int]:
        values = {counter_id: 0 for counter_id in counter_ids}
        for item in CounterModel.batch_get(counter_ids, consistent_read=True):
            values[item.counter_id] = int(item.value)
        return values

    def transfers_of_municipality(
        self, municipality_code: str, start: str | None = None, end: str | None = None
    ) -> Iterator[ports.PostedAmount]:
        """The municipality's transfers posted from `start` to `end` (inclusive), from `transfer_index`:
        what the stream has delivered, about a second behind the ledger in AWS."""
        from chalicelib.storage import projection

        upper = end + projection.SORT_KEY_END_SUFFIX if end else None
        if start and upper:
            condition = TransferIndexModel.sort_key.between(start, upper)
        elif start:
            condition = TransferIndexModel.sort_key >= start
        elif upper:
            condition = TransferIndexModel.sort_key <= upper
        else:
            condition = None
        for shard in range(MUNICIPALITY_INDEX_SHARDS):
            key = projection.municipality_index_key(f"{municipality_code}#{shard}")
            for item in TransferIndexModel.query(key, condition):
                transfer = item.transfer.as_dict()
                yield ports.PostedAmount(
                    transfer_id=transfer["transfer_id"],
                    kind=transfer["kind"],
                    amount=int(transfer["amount"]),
                    merchant_id=transfer.get("merchant_id"),
                    posted_at=transfer["posted_at"],
                )

    def transfers_of_mykey(self, mykey_id: str, municipality_code: str | None = None, limit: int = 100) -> list[ports.Transfer]:
        from chalicelib.storage import projection

        # PynamoDB's limit counts items after the filter, fetching further pages as needed.
        condition = TransferIndexModel.municipality_code == municipality_code if municipality_code else None
        items = TransferIndexModel.query(projection.mykey_index_key(mykey_id), filter_condition=condition,
                                         scan_index_forward=False, limit=limit)
        return [_transfer_from_model(TransferModel(**item.transfer.as_dict())) for item in items]

    # -- writes --------------------------------------------------------------------------------------

    def use_nonce(self, nonce_key: str, expires_at: int) -> bool:
        return save_if_absent(NonceModel(nonce_key, expires_at=expires_at))

    def post_transfer(
        self, transfer: ports.Transfer, wallet: ports.WalletWrite, counters: list[ports.CounterWrite],
        second_wallet: ports.WalletWrite | None = None, card_guard: ports.CardGuard | None = None,
    ) -> None:
        """One transaction: the transfer, its wallet (and a second one when points move between two
        wallets of the same resident, such as the reserve and a municipality), its counters, and for a
        payment the check that the card is still active and bound to the wallet's MyKey ID."""
        wallets = [wallet] + ([second_wallet] if second_wallet else [])
        # In the order PynamoDB sends them: condition checks, then puts, then updates.
        roles = ([("card", card_guard.certificate_key)] if card_guard is not None else []) + [("transfer", None)] + [
            ("wallet", None)] * len(wallets) + [("counter", c.counter_id) for c in counters]
        try:
            with TransactWrite(connection=self._connection) as transaction:
                transaction.save(
                    self._transfer_model(transfer),
                    condition=TransferModel.transfer_id.does_not_exist(),
                    return_values=_ALL_OLD,
                )
                for each_wallet in wallets:
                    self._add_wallet_update(transaction, each_wallet)
                for counter in counters:
                    self._add_counter_update(transaction, counter)
                if card_guard is not None:
                    transaction.condition_check(
                        CardModel, card_guard.certificate_key,
                        condition=(CardModel.status == ports.CARD_ACTIVE) & (CardModel.mykey_id == card_guard.mykey_id),
                    )
        except TransactWriteError as error:
            self._raise_outcome(error, roles)
        for each_wallet in wallets:
            self._cache.remember_written_wallet(each_wallet)

    def move_counter(self, source_id: str, target_id: str, amount: int) -> None:
        try:
            with TransactWrite(connection=self._connection) as transaction:
                self._add_counter_update(transaction, ports.CounterWrite(source_id, -amount, "at_least", amount))
                transaction.update(
                    CounterModel(target_id),
                    actions=[CounterModel.value.add(amount)],
                    condition=CounterModel.counter_id.exists(),
                )
        except TransactWriteError as error:
            self._raise_outcome(error, [("counter", source_id), ("counter", target_id)])

    # -- partners ------------------------------------------------------------------------------------

    def get_partner(self, partner_id: str) -> dict | None:
        item = self._get(PartnerModel, partner_id)
        if item is None:
            return None
        return {
            "partner_id": item.partner_id, "name": item.name, "public_key": item.public_key,
            "public_keys": list(item.public_keys or [item.public_key]),
            "result_queue": item.result_queue, "agreement": _plain(item.agreement), "active": bool(item.active),
        }

    def put_partner(self, partner: dict) -> None:
        public_keys = list(partner.get("public_keys") or [partner["public_key"]])
        PartnerModel(
            partner["partner_id"], name=partner["name"], public_key=public_keys[0], public_keys=public_keys,
            result_queue=partner["result_queue"], agreement=partner["agreement"], active=partner.get("active", True),
        ).save()

    def get_conversion_rejection(self, partner_id: str, partner_txn_key: str) -> dict | None:
        item = self._get(ConversionRejectionModel, f"{partner_id}#{partner_txn_key}", consistent_read=True)
        if item is None:
            return None
        return {"partner_txn_id": item.partner_txn_id, "reason": item.reason,
                "message_fingerprint": item.message_fingerprint, "rejected_at": item.rejected_at}

    def put_conversion_rejection(self, partner_id: str, partner_txn_key: str, partner_txn_id: str | None, reason: str,
                                 message_fingerprint: str | None, rejected_at: str) -> None:
        try:
            ConversionRejectionModel(
                f"{partner_id}#{partner_txn_key}", partner_id=partner_id, partner_txn_id=partner_txn_id, reason=reason,
                message_fingerprint=message_fingerprint, rejected_at=rejected_at,
            ).save(condition=ConversionRejectionModel.conversion_key.does_not_exist())
        except PutError as error:
            # A concurrent delivery recorded its refusal first; the first recorded reason stands.
            if error.cause_response_code != "ConditionalCheckFailedException":
                raise

    def transfers_of_partner(self, partner_id: str, start: str, end: str) -> list[dict]:
        return [
            {"transfer_id": item.transfer_id, "municipality_code": item.municipality_code, "amount": int(item.amount),
             "partner_points": int(item.partner_points or 0), "campaign_code": item.campaign_code}
            for item in TransferModel.by_partner.query(partner_id, TransferModel.posted_at.between(start, end))
            if item.kind == ports.CONVERSION
        ]

    def conversion_page(self, partner_id: str, start: str, end: str, cursor: str | None,
                        limit: int = 500) -> tuple[list[dict], str | None]:
        """One page of a partner's decisions in [start, end]: its credits first, then its refusals."""
        phase, start_key = _read_cursor(cursor, partner_id)
        if phase == "credited":
            result = TransferModel.by_partner.query(
                partner_id, TransferModel.posted_at.between(start, end), limit=limit, last_evaluated_key=start_key)
            page = [_credited_line(item) for item in result if item.kind == ports.CONVERSION]
            if result.last_evaluated_key:
                return page, _write_cursor("credited", result.last_evaluated_key)
            # The credits are done: the same page goes on with the refusals, as the cursor would.
            phase, start_key, limit = "rejected", None, max(limit - len(page), 1)
        else:
            page = []
        result = ConversionRejectionModel.by_partner.query(
            partner_id, ConversionRejectionModel.rejected_at.between(start, end), limit=limit, last_evaluated_key=start_key)
        page += [_rejected_line(item) for item in result]
        return page, (_write_cursor("rejected", result.last_evaluated_key) if result.last_evaluated_key else None)

    # -- transfer-outs: operators, programmes, holds -----------------------------------------------

    def get_operator(self, operator_id: str) -> dict | None:
        item = self._get(OperatorModel, operator_id)
        if item is None:
            return None
        return {"operator_id": item.operator_id, "name": item.name, "public_key": item.public_key,
                "request_queue": item.request_queue, "active": bool(item.active)}

    def put_operator(self, operator: dict) -> None:
        OperatorModel(operator["operator_id"], name=operator["name"], public_key=operator["public_key"],
                      request_queue=operator["request_queue"], active=operator.get("active", True)).save()

    def get_programme(self, programme_id: str) -> dict | None:
        item = self._get(TransferProgrammeModel, programme_id)
        if item is None:
            return None
        return {"programme_id": item.programme_id, "municipality_code": item.municipality_code,
                "operator_id": item.operator_id, "name": item.name, "account_pattern": item.account_pattern,
                "check_digit": item.check_digit, "hold_seconds": int(item.hold_seconds), "active": bool(item.active)}

    def put_programme(self, programme: dict) -> None:
        TransferProgrammeModel(
            programme["programme_id"], municipality_code=programme["municipality_code"], operator_id=programme["operator_id"],
            name=programme["name"], account_pattern=programme["account_pattern"], check_digit=programme["check_digit"],
            hold_seconds=programme["hold_seconds"], active=programme.get("active", True),
        ).save()

    def get_hold(self, hold_id: str) -> dict | None:
        item = self._get(HoldModel, hold_id, consistent_read=True)
        return _hold(item) if item else None

    def create_hold(self, transfer: ports.Transfer, wallet: ports.WalletWrite, hold: dict) -> None:
        """The hold's transfer, the wallet debit and the hold itself: one transaction."""
        try:
            with TransactWrite(connection=self._connection) as transaction:
                transaction.save(self._transfer_model(transfer), condition=TransferModel.transfer_id.does_not_exist(),
                                 return_values=_ALL_OLD)
                self._add_wallet_update(transaction, wallet)
                transaction.save(HoldModel(hold["hold_id"], pending_shard=str(zlib.crc32(hold["hold_id"].encode()) % EXPIRY_INDEX_SHARDS),
                                           **{key: value for key, value in hold.items() if key != "hold_id"}),
                                 condition=HoldModel.hold_id.does_not_exist())
        except TransactWriteError as error:
            # In the order PynamoDB sends them: puts (transfer, hold), then updates (wallet).
            self._raise_outcome(error, [("transfer", None), ("hold", None), ("wallet", None)])

    def finish_hold(self, transfer: ports.Transfer, hold_id: str, new_state: str, reason: str | None,
                    wallet: ports.WalletWrite | None, deadline_after: int | None = None) -> None:
        """Post or void: the transfer, the hold's state change (only from pending), the wallet on a void."""
        condition = HoldModel.state == "pending"
        if deadline_after is not None:
            condition &= HoldModel.deadline > deadline_after
        roles = [("transfer", None)] + ([("wallet", None)] if wallet else []) + [("hold", None)]
        try:
            with TransactWrite(connection=self._connection) as transaction:
                transaction.save(self._transfer_model(transfer), condition=TransferModel.transfer_id.does_not_exist(),
                                 return_values=_ALL_OLD)
                if wallet:
                    self._add_wallet_update(transaction, wallet)
                transaction.update(
                    HoldModel(hold_id),
                    actions=[HoldModel.state.set(new_state), HoldModel.finished_at.set(transfer.posted_at),
                             HoldModel.outcome_reason.set(reason) if reason else HoldModel.outcome_reason.remove(),
                             HoldModel.pending_shard.remove()],
                    condition=condition, return_values=_ALL_OLD,
                )
        except TransactWriteError as error:
            self._raise_outcome(error, roles)

    def pending_holds_due(self, now: int) -> list[str]:
        return [item.hold_id for shard in range(EXPIRY_INDEX_SHARDS)
                for item in HoldModel.pending_by_deadline.query(str(shard), HoldModel.deadline < now)]

    def holds_of_operator(self, operator_id: str) -> list[dict]:
        # Statements only, monthly: a filtered scan, never on a resident's path.
        return [_hold(item) for item in HoldModel.scan(HoldModel.operator_id == operator_id)]

    # -- seeding and administration ------------------------------------------------------------------

    def put_municipality(self, municipality: ports.Municipality) -> None:
        MunicipalityModel(
            municipality.code,
            name=municipality.name,
            point_name=municipality.point_name,
            expiry_rule=municipality.expiry_rule,
            pin_free_limit=municipality.pin_free_limit,
            max_amount=municipality.max_amount,
            budget_total=municipality.budget_total,
            budget_shards=municipality.budget_shards,
            approval_threshold=municipality.approval_threshold,
        ).save()

    def update_municipality(self, municipality: ports.Municipality, expected_budget_total: int,
                            budget: ports.CounterWrite | None) -> None:
        """New programme settings and, in the same transaction, the budget counter's share of a new total."""
        roles = [("municipality", None)] + ([("counter", budget.counter_id)] if budget else [])
        try:
            with TransactWrite(connection=self._connection) as transaction:
                transaction.update(
                    MunicipalityModel(municipality.code),
                    actions=[
                        MunicipalityModel.point_name.set(municipality.point_name),
                        MunicipalityModel.expiry_rule.set(municipality.expiry_rule),
                        MunicipalityModel.pin_free_limit.set(municipality.pin_free_limit),
                        MunicipalityModel.max_amount.set(municipality.max_amount),
                        MunicipalityModel.approval_threshold.set(municipality.approval_threshold),
                        MunicipalityModel.budget_total.set(municipality.budget_total),
                    ],
                    condition=MunicipalityModel.budget_total == expected_budget_total,
                )
                if budget:
                    self._add_counter_update(transaction, budget)
        except TransactWriteError as error:
            self._raise_outcome(error, roles)

    def put_counter(self, counter_id: str, value: int) -> None:
        CounterModel(counter_id, value=value).save()

    def put_merchant(self, merchant: ports.Merchant) -> None:
        MerchantModel(
            merchant.merchant_id,
            name=merchant.name,
            kind=merchant.kind,
            municipality_code=merchant.municipality_code,
            accepted_municipalities=set(merchant.accepted_municipalities),
            active=merchant.active,
        ).save()

    def create_merchant(self, merchant: ports.Merchant, registered_at: str) -> bool:
        """Register a merchant unless its id is taken; False when it is."""
        return save_if_absent(MerchantModel(
            merchant.merchant_id, name=merchant.name, kind=merchant.kind, municipality_code=merchant.municipality_code,
            accepted_municipalities=set(merchant.accepted_municipalities), active=merchant.active,
            registered_at=registered_at,
        ))

    def set_merchant_active(self, merchant_id: str, active: bool) -> None:
        MerchantModel(merchant_id).update(actions=[MerchantModel.active.set(active)],
                                          condition=MerchantModel.merchant_id.exists())

    def merchants_of_municipality(self, municipality_code: str) -> list[ports.Merchant]:
        return [self._merchant(item) for item in MerchantModel.by_municipality.query(municipality_code)]

    def create_terminal(self, terminal: ports.Terminal, registered_at: str) -> bool:
        return save_if_absent(TerminalModel(
            terminal.terminal_id, merchant_id=terminal.merchant_id, public_key=terminal.public_key,
            active=terminal.active, label=terminal.label, registered_at=registered_at,
        ))

    def set_terminal_active(self, terminal_id: str, active: bool) -> None:
        TerminalModel(terminal_id).update(actions=[TerminalModel.active.set(active)],
                                          condition=TerminalModel.terminal_id.exists())

    def terminals_of_merchant(self, merchant_id: str) -> list[ports.Terminal]:
        return [
            ports.Terminal(item.terminal_id, item.merchant_id, item.public_key, bool(item.active), item.label)
            for item in TerminalModel.by_merchant.query(merchant_id)
        ]

    def put_terminal(self, terminal: ports.Terminal) -> None:
        TerminalModel(
            terminal.terminal_id,
            merchant_id=terminal.merchant_id,
            public_key=terminal.public_key,
            active=terminal.active,
            label=terminal.label,
        ).save()

    def put_card(self, card: ports.Card) -> None:
        write_card(card)

    def put_mykey(self, mykey: ports.Mykey) -> None:
        write_mykey(mykey)

    def set_card_status(self, certificate_key: str, status: str) -> None:
        CardModel(certificate_key).update(actions=[CardModel.status.set(status)], condition=CardModel.certificate_key.exists())

    # -- helpers -------------------------------------------------------------------------------------

    @staticmethod
    def _get(model, hash_key, range_key=None, consistent_read=False):
        try:
            return model.get(hash_key, range_key, consistent_read=consistent_read)
        except model.DoesNotExist:
            return None

    @staticmethod
    def _transfer_model(transfer: ports.Transfer) -> TransferModel:
        values = dataclasses.asdict(transfer)
        return TransferModel(
            values.pop("transfer_id"),
            municipality_shard=municipality_shard(transfer.municipality_code, transfer.transfer_id),
            **values,
        )

    @staticmethod
    def _add_wallet_update(transaction: TransactWrite, wallet: ports.WalletWrite) -> None:
        lots = {day: points for day, points in wallet.new_lots.items() if points > 0}
        next_expires_on = min(lots) if lots else None
        actions = [
            WalletModel.balance.set(sum(lots.values())),
            WalletModel.lots.set(lots),
            WalletModel.version.set(wallet.expected_version + 1),
            WalletModel.updated_at.set(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())),
        ]
        if next_expires_on:
            actions += [
                WalletModel.next_expires_on.set(next_expires_on),
                WalletModel.expiry_shard.set(expiry_shard(wallet.mykey_id)),
            ]
        else:
            # An empty wallet leaves the sparse expiry index altogether.
            actions += [WalletModel.next_expires_on.remove(), WalletModel.expiry_shard.remove()]
        if wallet.expected_version == 0:
            condition = WalletModel.mykey_id.does_not_exist()
        else:
            condition = WalletModel.version == wallet.expected_version
            if wallet.debit_amount:
                condition &= WalletModel.balance >= wallet.debit_amount
        transaction.update(
            WalletModel(wallet.mykey_id, wallet.municipality_code),
            actions=actions,
            condition=condition,
            return_values=_ALL_OLD,
        )

    @staticmethod
    def _add_counter_update(transaction: TransactWrite, counter: ports.CounterWrite) -> None:
        if counter.condition == "at_least":
            condition = CounterModel.value >= counter.bound
        elif counter.condition == "at_most":
            condition = CounterModel.counter_id.does_not_exist() | (CounterModel.value <= counter.bound)
        elif counter.condition == "equals":
            condition = CounterModel.value == counter.bound
            if counter.bound == 0:
                condition = CounterModel.counter_id.does_not_exist() | condition
        else:
            raise ValueError(f"unknown counter condition {counter.condition}")
        transaction.update(
            CounterModel(counter.counter_id),
            actions=[CounterModel.value.add(counter.delta)],
            condition=condition,
            return_values=_ALL_OLD,
        )

    def _raise_outcome(self, error: TransactWriteError, items: list[tuple[str, str | None]]) -> None:
        reasons = error.cancellation_reasons
        if not reasons:
            if error.cause_response_code in {"ThrottlingException", "ProvisionedThroughputExceededException"}:
                raise ports.WriteContention(error.cause_response_code) from error
            raise error
        codes = [reason.code if reason else None for reason in reasons]
        # The idempotency guard speaks first: a replay must return the first outcome, whatever else failed.
        for (role, counter_id), reason in zip(items, reasons):
            if reason is None or reason.code != "ConditionalCheckFailed":
                continue
            if role == "transfer":
                raise ports.TransferAlreadyPosted(_transfer_from_model(TransferModel.from_raw_data(reason.raw_item))) from error
        for (role, counter_id), reason in zip(items, reasons):
            if reason is None or reason.code != "ConditionalCheckFailed":
                continue
            if role == "wallet":
                current = _wallet_from_model(WalletModel.from_raw_data(reason.raw_item)) if reason.raw_item else None
                if current is not None:
                    self._cache.remember_wallet(current)
                raise ports.WalletChanged(current) from error
            if role == "card":
                self._cache.forget_card(counter_id)
                raise ports.CardChanged(counter_id) from error
            if role == "counter":
                value = int(reason.raw_item["value"]["N"]) if reason.raw_item and "value" in reason.raw_item else None
                raise ports.CounterConditionFailed(counter_id, value) from error
            if role == "municipality":
                raise ports.WriteContention("programme changed meanwhile") from error
            if role == "hold":
                raise ports.HoldNotPending(_hold(HoldModel.from_raw_data(reason.raw_item)) if reason.raw_item else None) from error
        if any(code in _TRANSIENT_REASONS for code in codes):
            raise ports.WriteContention(",".join(str(code) for code in codes)) from error
        raise error


# -- partner reconciliation pages ----------------------------------------------------------------------


def _credited_line(item) -> dict:
    code = None if item.municipality_code == ports.RESERVE else item.municipality_code
    return {"partner_txn_id": item.partner_txn_id, "status": "credited", "reason": None, "municipality_code": code,
            "points": int(item.amount), "partner_points": int(item.partner_points or 0),
            "campaign_code": item.campaign_code, "decided_at": item.posted_at}


def _rejected_line(item) -> dict:
    return {"partner_txn_id": item.partner_txn_id, "status": "rejected", "reason": item.reason, "municipality_code": None,
            "points": 0, "partner_points": None, "campaign_code": None, "decided_at": item.rejected_at}


def _write_cursor(phase: str, last_evaluated_key: dict) -> str:
    import base64
    import json

    text = json.dumps({"phase": phase, "key": last_evaluated_key}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii")


def _read_cursor(cursor: str | None, partner_id: str) -> tuple[str, dict | None]:
    """The cursor a previous page gave, checked: it comes back from outside and must name this partner's
    own index partition (DynamoDB would refuse another's start key, but with an error, not an answer)."""
    import base64
    import binascii
    import json

    from chalicelib import errors

    if cursor is None:
        return "credited", None
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor.encode("ascii")))
        phase, key = data["phase"], data["key"]
        valid = (phase in ("credited", "rejected") and isinstance(key, dict)
                 and key.get("partner_id") == {"S": partner_id}
                 and all(isinstance(value, dict) and set(value) == {"S"} and isinstance(value["S"], str)
                         for value in key.values()))
    except (ValueError, UnicodeError, binascii.Error, KeyError, TypeError):
        valid = False
    if not valid:
        raise errors.ValidationFailed("cursor が正しくありません。前のページの cursor をそのまま指定してください。", field="cursor")
    return phase, key
