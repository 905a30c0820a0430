"""Domain errors: plain exception classes, one per refusal the API can give.

Each class names its stable error `code` and HTTP `status`; the edge (`chalicelib.api.errors`) turns
them into the error body of docs/CONTRACTS.md#errors. Messages are Japanese because shop owners, staff and residents read
them; code never looks at message text, only at the class.
"""
from __future__ import annotations


class DomainError(Exception):
    code = "domain_error"
    status = 400
    message = "リクエストを処理できませんでした。"

    def __init__(self, message: str | None = None, **details):
        super().__init__(message or self.message)
        self.message = message or self.message
        self.details = details


class ValidationFailed(DomainError):
    code = "validation_failed"
    status = 400
    message = "入力内容に誤りがあります。"


class InvalidMunicipalityCode(ValidationFailed):
    code = "invalid_municipality_code"
    message = "自治体コードが正しくありません（6桁・検査数字付き）。"


class InvalidMykeyId(ValidationFailed):
    code = "invalid_mykey_id"
    message = "マイキーIDが正しくありません（英大文字と数字2〜9の8文字）。"


class InvalidAmount(ValidationFailed):
    code = "invalid_amount"
    message = "ポイント数が正しくありません。"


class IndividualNumberForbidden(ValidationFailed):
    code = "individual_number_forbidden"
    message = "個人番号（マイナンバー）は受け付けられません。"


class RequestTooLarge(DomainError):
    code = "request_too_large"
    status = 413
    message = "リクエストが大きすぎます。"


class TerminalAuthenticationFailed(DomainError):
    code = "terminal_authentication_failed"
    status = 401
    message = "端末の認証に失敗しました。"


class StaffAuthenticationFailed(DomainError):
    code = "staff_authentication_failed"
    status = 401
    message = "職員の認証に失敗しました。もう一度サインインしてください。"


class StaffSignInLocked(DomainError):
    """Too many failed sign-ins in a row for one staff id; `retry_after_seconds` becomes `Retry-After`."""

    code = "staff_sign_in_locked"
    status = 429
    message = "サインインに続けて失敗したため、この職員IDを一時的にロックしています。しばらくたってからもう一度お試しください。"


class StaffForbidden(DomainError):
    code = "staff_forbidden"
    status = 403
    message = "この操作の権限がありません。"


class CardCertificateInvalid(DomainError):
    code = "card_certificate_invalid"
    status = 401
    message = "カードの証明書を確認できませんでした。"


class CardUnknown(DomainError):
    code = "card_unknown"
    status = 404
    message = "このカードは登録されていません。"


class CardRevoked(DomainError):
    code = "card_revoked"
    status = 403
    message = "このカードは利用停止または失効しています。"


class CardSignatureRequired(DomainError):
    code = "card_signature_required"
    status = 401
    message = "この金額には暗証番号の入力が必要です。"


class CardSignatureInvalid(DomainError):
    code = "card_signature_invalid"
    status = 401
    message = "カードの署名を確認できませんでした。"


class CardSignatureExpired(DomainError):
    code = "card_signature_expired"
    status = 401
    message = "カードの署名の有効期限が切れました。もう一度カードをかざしてください。"


class MunicipalityNotFound(DomainError):
    code = "municipality_not_found"
    status = 404
    message = "自治体が見つかりません。"


class MerchantNotAcceptingMunicipality(DomainError):
    code = "merchant_not_accepting_municipality"
    status = 403
    message = "この店舗ではこの自治体のポイントは使えません。"


class InsufficientBalance(DomainError):
    code = "insufficient_balance"
    status = 409
    message = "ポイント残高が足りません。"


class TransferIdConflict(DomainError):
    code = "transfer_id_conflict"
    status = 409
    message = "この取引IDは別の内容で使われています。"


class TransferNotFound(DomainError):
    code = "transfer_not_found"
    status = 404
    message = "取引が見つかりません。"


class RefundExceedsPayment(DomainError):
    code = "refund_exceeds_payment"
    status = 409
    message = "返金額が支払額の残りを超えています。"


class RefundNotAllowed(DomainError):
    code = "refund_not_allowed"
    status = 403
    message = "この取引はこの店舗から返金できません。"


class BudgetExceeded(DomainError):
    code = "budget_exceeded"
    status = 409
    message = "予算の残りを超えるため付与できません。"


class CsvEncodingUnsupported(ValidationFailed):
    code = "csv_encoding_unsupported"
    message = "ファイルの文字コードを読み取れません。Excel で「CSV UTF-8」または「CSV（コンマ区切り）」で保存してください。"


class CsvHeaderInvalid(ValidationFailed):
    code = "csv_header_invalid"
    message = "CSV の1行目（見出し）が正しくありません。"


class CsvTooManyRows(ValidationFailed):
    code = "csv_too_many_rows"
    message = "1つのファイルは200,000行までです。ファイルを分けてください。"


class ApprovalNotFound(DomainError):
    code = "approval_not_found"
    status = 404
    message = "承認依頼が見つかりません。"


class ApprovalAlreadyDecided(DomainError):
    code = "approval_already_decided"
    status = 409
    message = "この依頼は既に承認または却下されています。"


class SelfApprovalForbidden(DomainError):
    code = "self_approval_forbidden"
    status = 403
    message = "自分が依頼した付与は承認できません。別の承認者に依頼してください。"


class GrantBatchNotFound(DomainError):
    code = "grant_batch_not_found"
    status = 404
    message = "取り込みが見つかりません。"


class MerchantNotFound(DomainError):
    code = "merchant_not_found"
    status = 404
    message = "この自治体の加盟店に見つかりません。"


class MerchantIdTaken(DomainError):
    code = "merchant_id_taken"
    status = 409
    message = "この加盟店IDは既に使われています。"


class MerchantDisabled(DomainError):
    code = "merchant_disabled"
    status = 409
    message = "この加盟店は停止されています。"


class TerminalNotFound(DomainError):
    code = "terminal_not_found"
    status = 404
    message = "この自治体の端末に見つかりません。"


class TerminalIdTaken(DomainError):
    code = "terminal_id_taken"
    status = 409
    message = "この端末IDは既に使われています。"


class StaffNotFound(DomainError):
    code = "staff_not_found"
    status = 404
    message = "この自治体の職員に見つかりません。"


class StaffIdTaken(DomainError):
    code = "staff_id_taken"
    status = 409
    message = "この職員IDは既に使われています。"


class BudgetReductionTooLarge(DomainError):
    code = "budget_reduction_too_large"
    status = 409
    message = "予算の減額分が未使用の予算を超えています。"


class ConcurrentUpdate(DomainError):
    """Raised only when a wallet stays contended after every retry; the client may safely retry."""

    code = "concurrent_update"
    status = 503
    message = "混み合っています。同じ内容でもう一度お試しください。"


class NotFound(DomainError):
    code = "not_found"
    status = 404
    message = "見つかりません。"


class MykeyIdUnknown(DomainError):
    code = "mykey_id_unknown"
    status = 404
    message = "このマイキーIDは登録されていません。番号をご確認ください。"


class CardSuspended(DomainError):
    code = "card_suspended"
    status = 403
    message = "このカードは利用停止中です。再開は市区町村の窓口で手続きしてください。"


class CardSuperseded(DomainError):
    code = "card_superseded"
    status = 403
    message = "このカードの証明書は更新済みです。新しいカードをお使いください。"


class CardRegisteredElsewhere(DomainError):
    code = "card_registered_elsewhere"
    status = 409
    message = "このカードは別のマイキーIDに登録されています。"


class ChallengeInvalid(DomainError):
    code = "challenge_invalid"
    status = 401
    message = "確認コードが無効か期限切れです。最初からやり直してください。"


class MykeyIdTaken(DomainError):
    code = "mykey_id_taken"
    status = 409
    message = "このマイキーIDは既に使われています。別のIDを選んでください。"


class MykeyIdUnavailable(DomainError):
    code = "mykey_id_unavailable"
    status = 503
    message = "マイキーIDを発行できませんでした。もう一度お試しください。"


class ResidentAuthenticationFailed(DomainError):
    code = "resident_authentication_failed"
    status = 401
    message = "もう一度カードでサインインしてください。"


class FacilityLinksNotOffered(DomainError):
    code = "facility_links_not_offered"
    status = 403
    message = "この端末では施設の利用者番号を扱えません。"


class FacilityLinkExists(DomainError):
    code = "facility_link_exists"
    status = 409
    message = "このカードには既に別の利用者番号が登録されています。先に登録を解除してください。"


class FacilityLinkNotFound(DomainError):
    code = "facility_link_not_found"
    status = 404
    message = "このカードにはこの施設の利用者番号が登録されていません。"


class FeedInvalid(DomainError):
    code = "feed_invalid"
    status = 400
    message = "失効・更新情報のファイルを読み取れませんでした。"


class MykeyNotSuspended(DomainError):
    code = "mykey_not_suspended"
    status = 409
    message = "このマイキーIDは利用停止されていません。再開の手続きは不要です。"


class DestinationAccountInvalid(ValidationFailed):
    code = "destination_account_invalid"
    message = "移行先の番号が正しくありません。カードの番号をもう一度ご確認ください。"


class ProgrammeNotFound(DomainError):
    code = "programme_not_found"
    status = 404
    message = "移行先のプログラムが見つかりません。"


class OperatorAuthenticationFailed(DomainError):
    code = "operator_authentication_failed"
    status = 401
    message = "事業者の認証に失敗しました。"


class PartnerAuthenticationFailed(DomainError):
    """A partner's signed read request refused: unknown or inactive partner, bad signature, stale or reused."""

    code = "partner_authentication_failed"
    status = 401
    message = "提携先の認証に失敗しました。"


class HoldNotFound(DomainError):
    code = "hold_not_found"
    status = 404
    message = "移行の申請が見つかりません。"


class ConfirmationMismatch(DomainError):
    code = "confirmation_mismatch"
    status = 409
    message = "確認内容（移行先番号・ポイント数）が申請と一致しません。"


class HoldAlreadyVoided(DomainError):
    code = "hold_already_voided"
    status = 409
    message = "この移行申請は取り消し済みです（ポイントは返却されました）。"


class HoldAlreadyPosted(DomainError):
    code = "hold_already_posted"
    status = 409
    message = "この移行申請は確定済みです。"


def message_for_code(code: str) -> str:
    """The standard message of an error code, for reports that list refusals recorded earlier."""
    pending = list(DomainError.__subclasses__())
    while pending:
        error_class = pending.pop()
        if error_class.code == code:
            return error_class.message
        pending.extend(error_class.__subclasses__())
    return code
