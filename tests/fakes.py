"""In-memory stores with the same contract as the DynamoDB adapters, for fast unit tests of services.

`FakeLedgerStore.post_transfer` applies the same guards in the same order as the DynamoDB transaction
(transfer absent, wallet version and balance, counter conditions) under one lock, all or nothing.
"""
from __future__ import annotations

import dataclasses
import threading
import uuid

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
        self.rejections: dict[str, dict] = {}

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

    def wallet_for_update(self, mykey_id, municipality_code):
        return self.get_wallet(mykey_id, municipality_code), False

    def card_for_payment(self, certificate_key):
        return self.get_card(certificate_key), False

    def forget_card(self, certificate_key):
        pass

    def post_transfer(self, transfer, wallet, counters, second_wallet=None, card_guard=None):
        with self._lock:
            if transfer.transfer_id in self.transfers:
                raise ports.TransferAlreadyPosted(self.transfers[transfer.transfer_id])
            if card_guard is not None:
                card = self.cards.get(card_guard.certificate_key)
                if card is None or card.status != ports.CARD_ACTIVE or card.mykey_id != card_guard.mykey_id:
                    raise ports.CardChanged(card_guard.certificate_key)
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
        self.partners[partner["partner_id"]] = {**partner, "public_keys": list(partner.get("public_keys") or [partner["public_key"]])}

    def get_conversion_rejection(self, partner_id, partner_txn_key):
        found = self.rejections.get(f"{partner_id}#{partner_txn_key}")
        return None if found is None else {key: value for key, value in found.items() if key != "partner_id"}

    def put_conversion_rejection(self, partner_id, partner_txn_key, partner_txn_id, reason, message_fingerprint, rejected_at):
        self.rejections.setdefault(f"{partner_id}#{partner_txn_key}", {
            "partner_id": partner_id, "partner_txn_id": partner_txn_id, "reason": reason,
            "message_fingerprint": message_fingerprint, "rejected_at": rejected_at})

    def conversion_page(self, partner_id, start, end, cursor, limit=500):
        """Credits then refusals, as the DynamoDB store pages them; the cursor is the offset in that list."""
        credited = sorted((t for t in self.transfers.values()
                           if t.partner_id == partner_id and t.kind == ports.CONVERSION and start <= t.posted_at <= end),
                          key=lambda t: t.posted_at)
        rejected = sorted((r for r in self.rejections.values()
                           if r["partner_id"] == partner_id and start <= r["rejected_at"] <= end),
                          key=lambda r: r["rejected_at"])
        lines = [{"partner_txn_id": t.partner_txn_id, "status": "credited", "reason": None,
                  "municipality_code": None if t.municipality_code == ports.RESERVE else t.municipality_code,
                  "points": t.amount, "partner_points": t.partner_points, "campaign_code": t.campaign_code,
                  "decided_at": t.posted_at} for t in credited]
        lines += [{"partner_txn_id": r["partner_txn_id"], "status": "rejected", "reason": r["reason"],
                   "municipality_code": None, "points": 0, "partner_points": None, "campaign_code": None,
                   "decided_at": r["rejected_at"]} for r in rejected]
        offset = int(cursor or 0)
        following = offset + limit
        return lines[offset:following], (str(following) if following < len(lines) else None)

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

    def create_merchant(self, merchant, registered_at):
        with self._lock:
            if merchant.merchant_id in self.merchants:
                return False
            self.merchants[merchant.merchant_id] = merchant
            return True

    def set_merchant_active(self, merchant_id, active):
        self.merchants[merchant_id] = dataclasses.replace(self.merchants[merchant_id], active=active)

    def merchants_of_municipality(self, municipality_code):
        return sorted((m for m in self.merchants.values() if m.municipality_code == municipality_code),
                      key=lambda m: m.merchant_id)

    def create_terminal(self, terminal, registered_at):
        with self._lock:
            if terminal.terminal_id in self.terminals:
                return False
            self.terminals[terminal.terminal_id] = terminal
            return True

    def set_terminal_active(self, terminal_id, active):
        self.terminals[terminal_id] = dataclasses.replace(self.terminals[terminal_id], active=active)

    def terminals_of_merchant(self, merchant_id):
        return sorted((t for t in self.terminals.values() if t.merchant_id == merchant_id), key=lambda t: t.terminal_id)

    def update_municipality(self, municipality, expected_budget_total, budget):
        with self._lock:
            current = self.municipalities.get(municipality.code)
            if current is None or current.budget_total != expected_budget_total:
                raise ports.WriteContention("programme changed meanwhile")
            if budget is not None:
                value = self.counters.get(budget.counter_id, 0)
                if value < budget.bound:
                    raise ports.CounterConditionFailed(budget.counter_id, value)
                self.counters[budget.counter_id] = value + budget.delta
            self.municipalities[municipality.code] = municipality

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
        # staff id -> {"attempts", "window_started_at", "locked_until"}: the DynamoDB item's attributes
        self.sign_in_attempts: dict[str, dict] = {}
        self._lock = threading.Lock()

    def get_staff(self, staff_id):
        return self.accounts.get(staff_id)

    def put_staff(self, account):
        self.accounts[account.staff_id] = account

    def create_staff(self, account, created_at):
        if account.staff_id in self.accounts:
            return False
        self.accounts[account.staff_id] = account
        return True

    def set_staff_active(self, staff_id, active):
        self.accounts[staff_id] = dataclasses.replace(self.accounts[staff_id], active=active)

    def set_password(self, staff_id, password_hash):
        self.accounts[staff_id] = dataclasses.replace(self.accounts[staff_id], password_hash=password_hash)

    def staff_of_municipality(self, municipality_code):
        return [{"staff_id": a.staff_id, "role": a.role, "active": a.active, "created_at": None}
                for a in sorted(self.accounts.values(), key=lambda a: a.staff_id) if a.municipality_code == municipality_code]

    def put_session(self, session):
        self.sessions[session.session_key] = session

    def get_session(self, session_key):
        return self.sessions.get(session_key)

    def touch_session(self, session_key, last_seen_at):
        self.sessions[session_key] = dataclasses.replace(self.sessions[session_key], last_seen_at=last_seen_at)

    def delete_session(self, session_key):
        self.sessions.pop(session_key, None)

    def count_sign_in_attempt(self, staff_id, now, limits):
        """The same steps as `DynamoStaffStore.count_sign_in_attempt`, each under one lock."""
        from chalicelib.services.staff import SignInAttempt

        with self._lock:
            seen = self.sign_in_attempts.get(staff_id)
            if seen is not None and seen["locked_until"] is not None and seen["locked_until"] > now:
                return SignInAttempt(0, seen["locked_until"])
            if seen is None or seen["locked_until"] is not None or seen["window_started_at"] <= now - limits.window_seconds:
                self.sign_in_attempts[staff_id] = {"attempts": 1, "window_started_at": now, "locked_until": None}
                return SignInAttempt(1)
            seen["attempts"] += 1
            if seen["attempts"] < limits.max_attempts:
                return SignInAttempt(seen["attempts"])
            seen["locked_until"] = now + limits.lock_seconds
            return SignInAttempt(seen["attempts"], seen["locked_until"])

    def clear_sign_in_attempts(self, staff_id):
        with self._lock:
            self.sign_in_attempts.pop(staff_id, None)


class FakeGrantStore:
    """Approvals and uploads in memory, with the same first-writer-wins rules as `DynamoGrantStore`."""

    def __init__(self):
        self.approvals: dict[tuple[str, str], dict] = {}
        self.batches: dict[tuple[str, str], dict] = {}
        self.chunks: dict[tuple[str, int], dict] = {}

    def create_approval(self, approval):
        key = (approval["municipality_code"], approval["approval_id"])
        self.approvals.setdefault(key, {"decided_by": None, "decided_at": None, "decision_note": None, **approval})
        return dict(self.approvals[key])

    def get_approval(self, municipality_code, approval_id):
        found = self.approvals.get((municipality_code, approval_id))
        return dict(found) if found else None

    def approvals_of_municipality(self, municipality_code, state=None):
        return [dict(a) for (code, _), a in self.approvals.items() if code == municipality_code and state in (None, a["state"])]

    def decide_approval(self, municipality_code, approval_id, state, decided_by, decided_at, note):
        approval = self.approvals[(municipality_code, approval_id)]
        if approval["state"] != "pending":
            return False
        approval.update(state=state, decided_by=decided_by, decided_at=decided_at, decision_note=note)
        return True

    def create_batch(self, batch, chunks):
        key = (batch["municipality_code"], batch["batch_id"])
        if key in self.batches:
            return dict(self.batches[key]), False
        for number, rows in enumerate(chunks):
            self.chunks[(batch["batch_id"], number)] = {"chunk_number": number, "rows": rows, "state": "pending", "results": None}
        self.batches[key] = dict(batch)
        return dict(batch), True

    def get_batch(self, municipality_code, batch_id):
        found = self.batches.get((municipality_code, batch_id))
        return dict(found) if found else None

    def batches_of_municipality(self, municipality_code, limit=50):
        return [dict(b) for (code, _), b in self.batches.items() if code == municipality_code][:limit]

    def set_batch_status(self, municipality_code, batch_id, status, expected_status, **fields):
        batch = self.batches[(municipality_code, batch_id)]
        if batch["status"] != expected_status:
            return False
        batch.update(status=status, **fields)
        return True

    def get_chunk(self, batch_id, chunk_number):
        found = self.chunks.get((batch_id, chunk_number))
        return dict(found) if found else None

    def chunks_of_batch(self, batch_id):
        return [dict(c) for (b, _), c in sorted(self.chunks.items()) if b == batch_id]

    def pending_chunk_numbers(self, batch_id):
        return [n for (b, n), c in sorted(self.chunks.items()) if b == batch_id and c["state"] == "pending"]

    def finish_chunk(self, municipality_code, batch_id, chunk_number, results, posted, already_posted, failed, posted_amount):
        chunk = self.chunks[(batch_id, chunk_number)]
        if chunk["state"] != "pending":
            return False
        chunk.update(state="done", results=results)
        batch = self.batches[(municipality_code, batch_id)]
        batch["posted_rows"] += posted
        batch["already_posted_rows"] += already_posted
        batch["failed_rows"] += failed
        batch["posted_amount"] += posted_amount
        return True


class FakeGrantBatchQueue:
    def __init__(self):
        self.messages: list[tuple[str, str, int]] = []

    def send_chunks(self, municipality_code, batch_id, chunk_numbers):
        self.messages.extend((municipality_code, batch_id, number) for number in chunk_numbers)


class FakeSqs:
    """Stands in for SQS where an operation sends a message (transfer-out requests): nothing leaves."""

    def __init__(self):
        self.sent = []

    def get_queue_url(self, QueueName):
        return {"QueueUrl": f"https://sqs.local/{QueueName}"}

    def send_message(self, **message):
        self.sent.append(message)
        return {"MessageId": str(uuid.uuid4())}
