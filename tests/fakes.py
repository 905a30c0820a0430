"""In-memory stores with the same contract as the DynamoDB adapters, for fast unit tests of services.

`FakeLedgerStore.post_transfer` applies the same guards in the same order as the DynamoDB transaction
(transfer absent, wallet version and balance, counter conditions) under one lock, all or nothing.
"""
from __future__ import annotations

import dataclasses
import threading

from chalicelib.services import ports


class FakeLedgerStore:
    def __init__(self):
        self._lock = threading.Lock()
        self.municipalities: dict[str, ports.Municipality] = {}
        self.merchants: dict[str, ports.Merchant] = {}
        self.terminals: dict[str, ports.Terminal] = {}
        self.cards: dict[str, ports.Card] = {}
        self.mykeys: dict[str, ports.Mykey] = {}
        self.wallets: dict[tuple[str, str], ports.Wallet] = {}
        self.transfers: dict[str, ports.Transfer] = {}
        self.counters: dict[str, int] = {}
        self.nonces: dict[str, int] = {}
        self.partners: dict[str, dict] = {}
        self.rejections: dict[str, str] = {}

    # reads
    def get_municipality(self, code):
        return self.municipalities.get(code)

    def get_merchant(self, merchant_id):
        return self.merchants.get(merchant_id)

    def get_merchants(self, merchant_ids):
        return {key: self.merchants[key] for key in set(merchant_ids) if key in self.merchants}

    def get_terminal(self, terminal_id):
        return self.terminals.get(terminal_id)

    def get_card(self, certificate_key):
        return self.cards.get(certificate_key)

    def mykey_exists(self, mykey_id):
        return mykey_id in self.mykeys

    def get_wallet(self, mykey_id, municipality_code):
        return self.wallets.get((mykey_id, municipality_code), ports.Wallet(mykey_id, municipality_code))

    def list_wallets(self, mykey_id):
        return [wallet for (owner, _), wallet in sorted(self.wallets.items()) if owner == mykey_id]

    def wallets_of_municipality(self, municipality_code):
        return iter([wallet for (_, code), wallet in self.wallets.items() if code == municipality_code])

    def wallets_due_for_expiry(self, before_date):
        return iter([key for key, wallet in self.wallets.items() if wallet.lots and min(wallet.lots) < before_date])

    def get_transfer(self, transfer_id):
        return self.transfers.get(transfer_id)

    def get_counter(self, counter_id):
        return self.counters.get(counter_id, 0)

    def get_counters(self, counter_ids):
        return {counter_id: self.counters.get(counter_id, 0) for counter_id in counter_ids}

    def transfers_of_municipality(self, municipality_code, start=None, end=None):
        for transfer in self.transfers.values():
            if transfer.municipality_code != municipality_code:
                continue
            if (start and transfer.posted_at < start) or (end and transfer.posted_at > end):
                continue
            yield ports.PostedAmount(transfer.transfer_id, transfer.kind, transfer.amount, transfer.merchant_id, transfer.posted_at)

    def transfers_of_mykey(self, mykey_id, municipality_code=None, limit=100):
        mine = [t for t in self.transfers.values()
                if t.mykey_id == mykey_id and municipality_code in (None, t.municipality_code)]
        return sorted(mine, key=lambda t: t.posted_at, reverse=True)[:limit]

    # writes
    def use_nonce(self, nonce_key, expires_at):
        with self._lock:
            if nonce_key in self.nonces:
                return False
            self.nonces[nonce_key] = expires_at
            return True

    def post_transfer(self, transfer, wallet, counters, second_wallet=None):
        with self._lock:
            if transfer.transfer_id in self.transfers:
                raise ports.TransferAlreadyPosted(self.transfers[transfer.transfer_id])
            wallets = [wallet] + ([second_wallet] if second_wallet else [])
            for each in wallets:
                current = self.wallets.get((each.mykey_id, each.municipality_code))
                current_version = current.version if current else 0
                if current_version != each.expected_version or (
                    current is not None and each.debit_amount and current.balance < each.debit_amount
                ):
                    raise ports.WalletChanged(current)
            for counter in counters:
                value = self.counters.get(counter.counter_id, 0)
                if counter.condition == "at_least" and (counter.counter_id not in self.counters or value < counter.bound):
                    raise ports.CounterConditionFailed(counter.counter_id, value)
                if counter.condition == "at_most" and value > counter.bound:
                    raise ports.CounterConditionFailed(counter.counter_id, value)
                if counter.condition == "equals" and value != counter.bound:
                    raise ports.CounterConditionFailed(counter.counter_id, value)
            self.transfers[transfer.transfer_id] = transfer
            for each in wallets:
                lots = {day: points for day, points in each.new_lots.items() if points > 0}
                self.wallets[(each.mykey_id, each.municipality_code)] = ports.Wallet(
                    each.mykey_id, each.municipality_code, sum(lots.values()), lots, each.expected_version + 1
                )
            for counter in counters:
                self.counters[counter.counter_id] = self.counters.get(counter.counter_id, 0) + counter.delta

    def move_counter(self, source_id, target_id, amount):
        with self._lock:
            if self.counters.get(source_id, 0) < amount:
                raise ports.CounterConditionFailed(source_id, self.counters.get(source_id, 0))
            self.counters[source_id] -= amount
            self.counters[target_id] = self.counters.get(target_id, 0) + amount

    # partners
    def get_partner(self, partner_id):
        return self.partners.get(partner_id)

    def put_partner(self, partner):
        self.partners[partner["partner_id"]] = partner

    def get_conversion_rejection(self, partner_id, partner_txn_id):
        return self.rejections.get(f"{partner_id}#{partner_txn_id}")

    def put_conversion_rejection(self, partner_id, partner_txn_id, reason, rejected_at):
        self.rejections.setdefault(f"{partner_id}#{partner_txn_id}", reason)

    def transfers_of_partner(self, partner_id, start, end):
        return [{"transfer_id": t.transfer_id, "municipality_code": t.municipality_code, "amount": t.amount,
                 "partner_points": t.partner_points or 0, "campaign_code": t.campaign_code}
                for t in self.transfers.values()
                if t.partner_id == partner_id and t.kind == ports.CONVERSION and start <= t.posted_at <= end]

    # administration
    def put_municipality(self, municipality):
        self.municipalities[municipality.code] = municipality

    def put_counter(self, counter_id, value):
        self.counters[counter_id] = value

    def put_merchant(self, merchant):
        self.merchants[merchant.merchant_id] = merchant

    def put_terminal(self, terminal):
        self.terminals[terminal.terminal_id] = terminal

    def put_card(self, card):
        self.cards[card.certificate_key] = card

    def put_mykey(self, mykey):
        self.mykeys[mykey.mykey_id] = mykey

    def set_card_status(self, certificate_key, status):
        self.cards[certificate_key] = dataclasses.replace(self.cards[certificate_key], status=status)


class FakeStaffStore:
    def __init__(self):
        self.accounts = {}
        self.sessions = {}

    def get_staff(self, staff_id):
        return self.accounts.get(staff_id)

    def put_staff(self, account):
        self.accounts[account.staff_id] = account

    def put_session(self, session):
        self.sessions[session.session_key] = session

    def get_session(self, session_key):
        return self.sessions.get(session_key)

    def touch_session(self, session_key, last_seen_at):
        self.sessions[session_key] = dataclasses.replace(self.sessions[session_key], last_seen_at=last_seen_at)

    def delete_session(self, session_key):
        self.sessions.pop(session_key, None)
