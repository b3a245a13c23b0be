"""Stripe's test cards and the checks Checkout's card form makes before anything is charged."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Decline:
    code: str
    decline_code: str
    message: str
    param: str | None = None
    outcome_type: str = "issuer_declined"
    network_status: str = "declined_by_network"
    risk_level: str = "normal"
    seller_message: str | None = None


@dataclass(frozen=True)
class TestCard:
    number: str
    brand: str
    funding: str = "credit"
    country: str = "US"
    decline: Decline | None = None
    three_d_secure: bool = False
    refund: str = "succeeds"  # "succeeds" | "fails" (5126) | "pending" (7726)
    description: str = "Succeeds"
    # With ``three_d_secure``, a ``decline`` comes after the customer completes authentication.
    risk_level: str = "normal"
    cvc_check: str = "pass"
    address_line1_check: str | None = None
    address_postal_code_check: str | None = None


GENERIC_DECLINE = Decline(
    "card_declined", "generic_decline", "Your card has been declined.",
    seller_message="The bank did not return any further details with this decline.",
)
INSUFFICIENT_FUNDS = Decline("card_declined", "insufficient_funds", "Your card has insufficient funds.")
LOST_CARD = Decline("card_declined", "lost_card", "Your card has been declined.")
STOLEN_CARD = Decline("card_declined", "stolen_card", "Your card has been declined.")
EXPIRED_CARD = Decline("expired_card", "expired_card", "Your card has expired.", param="exp_month")
INCORRECT_CVC = Decline("incorrect_cvc", "incorrect_cvc", "Your card's security code is incorrect.", param="cvc")
PROCESSING_ERROR = Decline(
    "processing_error", "processing_error", "An error occurred while processing your card. Try again in a little bit.",
)
FRAUDULENT = Decline(
    "card_declined", "fraudulent", "Your card has been declined.",
    outcome_type="blocked", network_status="not_sent_to_network", risk_level="highest",
    seller_message="Stripe blocked this payment as too risky.",
)
LIVE_CARD_IN_TEST_MODE = Decline(
    "card_declined", "test_mode_live_card",
    "Your card was declined. Your request was in test mode, but used a non test (live) card. "
    "For a list of valid test cards, visit: https://stripe.com/docs/testing.",
    outcome_type="invalid", network_status="not_sent_to_network",
)

CARD_VELOCITY_EXCEEDED = Decline(
    "card_declined", "card_velocity_exceeded",
    "Your card was declined for making repeated attempts too frequently or exceeding its amount limit.",
)
HIGHEST_RISK = Decline(
    "card_declined", "fraudulent", "Your card has been declined.",
    outcome_type="blocked", network_status="not_sent_to_network", risk_level="highest",
    seller_message="Stripe blocked this payment as too risky.",
)
CVC_CHECK_FAILED = Decline(
    "incorrect_cvc", "incorrect_cvc", "Your card's security code is incorrect.", param="cvc",
    seller_message="The bank declined the payment because the CVC check failed.",
)

AUTHENTICATION_FAILED_MESSAGE = (
    "We are unable to authenticate your payment method. Please choose a different payment method and try again."
)

TEST_CARDS: dict[str, TestCard] = {
    card.number: card
    for card in [
        TestCard("4242424242424242", "visa"),
        TestCard("4000056655665556", "visa", funding="debit"),
        TestCard("5555555555554444", "mastercard"),
        TestCard("2223003122003222", "mastercard"),
        TestCard("5200828282828210", "mastercard", funding="debit"),
        TestCard("5105105105105100", "mastercard", funding="prepaid"),
        TestCard("378282246310005", "amex"),
        TestCard("371449635398431", "amex"),
        TestCard("6011111111111117", "discover"),
        TestCard("6011000990139424", "discover"),
        TestCard("3056930009020004", "diners"),
        TestCard("36227206271667", "diners"),
        TestCard("3566002020360505", "jcb", country="JP"),
        TestCard("6200000000000005", "unionpay", country="CN"),
        TestCard("4000002500000003", "visa", country="FR"),
        TestCard("4000002760000016", "visa", country="DE"),
        TestCard("4000008260000000", "visa", country="GB"),
        TestCard("4012888888881881", "visa"),
        TestCard("6205500000000000004", "unionpay", country="CN"),
        TestCard("3530111333300000", "jcb", country="JP"),
        TestCard("4000000760000002", "visa", country="BR"),
        TestCard("4000001240000000", "visa", country="CA"),
        TestCard("4000004840008001", "visa", country="MX"),
        TestCard("4000000400000008", "visa", country="AT"),
        TestCard("4000000560000004", "visa", country="BE"),
        TestCard("4000002080000001", "visa", country="DK"),
        TestCard("4000002460000001", "visa", country="FI"),
        TestCard("4000003000000030", "visa", country="GR"),
        TestCard("4000003720000005", "visa", country="IE"),
        TestCard("4000003800000008", "visa", country="IT"),
        TestCard("4000004420000006", "visa", country="LU"),
        TestCard("4000005280000002", "visa", country="NL"),
        TestCard("4000005780000007", "visa", country="NO"),
        TestCard("4000006200000007", "visa", country="PT"),
        TestCard("4000007240000007", "visa", country="ES"),
        TestCard("4000007520000008", "visa", country="SE"),
        TestCard("4000007560000009", "visa", country="CH"),
        TestCard("4000000360000006", "visa", country="AU"),
        TestCard("4000001560000002", "visa", country="CN"),
        TestCard("4000003440000004", "visa", country="HK"),
        TestCard("4000003920000003", "visa", country="JP"),
        TestCard("4000005540000008", "visa", country="NZ"),
        TestCard("4000007020000003", "visa", country="SG"),
        TestCard("4000003560000008", "visa", country="IN"),
        TestCard("4000000000000010", "visa", address_line1_check="fail", address_postal_code_check="fail",
                 description="Succeeds; address_line1_check and address_postal_code_check fail"),
        TestCard("4000000000000028", "visa", address_line1_check="fail", address_postal_code_check="pass",
                 description="Succeeds; address_line1_check fails"),
        TestCard("4000000000000036", "visa", address_line1_check="pass", address_postal_code_check="fail",
                 description="Succeeds; address_postal_code_check fails"),
        TestCard("4000000000000044", "visa", address_line1_check="unavailable", address_postal_code_check="unavailable",
                 cvc_check="unavailable", description="Succeeds; address and CVC checks unavailable"),
        TestCard("4000000000009235", "visa", risk_level="elevated", description="Succeeds with risk_level elevated"),
        TestCard("4000000000004954", "visa", decline=HIGHEST_RISK, description="Blocked by Radar: risk_level highest"),
        TestCard("4000000000000101", "visa", decline=CVC_CHECK_FAILED, cvc_check="fail",
                 description="CVC check fails; Radar's default rule blocks the payment (incorrect_cvc)"),
        TestCard("4000000000000341", "visa", decline=GENERIC_DECLINE,
                 description="Attaching succeeds, every charge is declined (generic_decline)"),
        TestCard("4000000000006975", "visa", decline=CARD_VELOCITY_EXCEEDED, description="Declined: card_velocity_exceeded"),
        TestCard("4000000000003055", "visa", description="Supports 3-D Secure, not required: succeeds"),
        TestCard("4000000000003063", "visa", three_d_secure=True, description="3-D Secure required"),
        TestCard("4000008400001629", "visa", three_d_secure=True, decline=GENERIC_DECLINE,
                 description="3-D Secure required; the payment is declined after authentication (card_declined)"),
        TestCard("4000008400001280", "visa", three_d_secure=True, decline=GENERIC_DECLINE,
                 description="3-D Secure required; declined after authentication (card_declined)"),
        TestCard("4000008260003178", "visa", three_d_secure=True, decline=INSUFFICIENT_FUNDS,
                 description="3-D Secure required; declined after authentication (insufficient_funds)"),
        TestCard("4000000000000259", "visa", description="Succeeds (Stripe then opens a dispute; disputes are not emulated)"),
        TestCard("4000000000000077", "visa", description="Succeeds; funds are available at once"),
        TestCard("4000000000000002", "visa", decline=GENERIC_DECLINE, description="Declined: generic_decline"),
        TestCard("4000000000009995", "visa", decline=INSUFFICIENT_FUNDS, description="Declined: insufficient_funds"),
        TestCard("4000000000009987", "visa", decline=LOST_CARD, description="Declined: lost_card"),
        TestCard("4000000000009979", "visa", decline=STOLEN_CARD, description="Declined: stolen_card"),
        TestCard("4000000000000069", "visa", decline=EXPIRED_CARD, description="Declined: expired_card"),
        TestCard("4000000000000127", "visa", decline=INCORRECT_CVC, description="Declined: incorrect_cvc"),
        TestCard("4000000000000119", "visa", decline=PROCESSING_ERROR, description="Declined: processing_error"),
        TestCard("4100000000000019", "visa", decline=FRAUDULENT, description="Blocked by Radar: fraudulent"),
        TestCard("4000002500003155", "visa", three_d_secure=True, description="3-D Secure challenge"),
        TestCard("4000002760003184", "visa", three_d_secure=True, description="3-D Secure challenge on every payment"),
        TestCard("4000000000003220", "visa", three_d_secure=True, description="3-D Secure 2 challenge"),
        TestCard("4000000000005126", "visa", refund="fails", description="Succeeds; a refund fails shortly after (expired_or_canceled_card)"),
        TestCard("4000000000007726", "visa", refund="pending", description="Succeeds; a refund is pending, then succeeds"),
    ]
}


class CardFormError(ValueError):
    """A problem Checkout's form reports before submitting anything (no PaymentIntent is touched)."""

    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass(frozen=True)
class CardDetails:
    number: str
    exp_month: int
    exp_year: int
    cvc: str
    card: TestCard

    @property
    def last4(self) -> str:
        return self.number[-4:]


def luhn_valid(number: str) -> bool:
    total = 0
    for index, digit in enumerate(reversed(number)):
        value = int(digit)
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def brand_of(number: str) -> str:
    if number.startswith("4"):
        return "visa"
    if number[:2] in ("34", "37"):
        return "amex"
    if number[:2] in ("51", "52", "53", "54", "55") or 2221 <= int(number[:4] or 0) <= 2720:
        return "mastercard"
    if number.startswith(("6011", "65")) or 644 <= int(number[:3] or 0) <= 649:
        return "discover"
    if number[:2] in ("30", "36", "38", "39"):
        return "diners"
    if number.startswith("35"):
        return "jcb"
    if number.startswith("62"):
        return "unionpay"
    return "unknown"


_EXPIRY = re.compile(r"^\s*(\d{1,2})\s*/?\s*(\d{2}|\d{4})\s*$")
_EXPIRY_COMPACT = re.compile(r"^\s*(\d{2})(\d{2})\s*$")


def parse_expiry(text: str) -> tuple[int, int]:
    text = (text or "").strip()
    match = _EXPIRY_COMPACT.match(text) or _EXPIRY.match(text)
    if not text or not match:
        raise CardFormError("Your card's expiration date is incomplete.", "cardExpiry")
    month, year = int(match.group(1)), int(match.group(2))
    if year < 100:
        year += 2000
    if not 1 <= month <= 12:
        raise CardFormError("Your card's expiration date is invalid.", "cardExpiry")
    return month, year


def check_card(number: str, expiry: str, cvc: str, *, today: tuple[int, int]) -> CardDetails:
    """Checks made by Checkout's card fields; ``today`` is (year, month) on the emulator's clock."""
    digits = re.sub(r"[\s-]", "", number or "")
    if not digits:
        raise CardFormError("Your card number is incomplete.", "cardNumber")
    if not digits.isdigit():
        raise CardFormError("Your card number is invalid.", "cardNumber")
    brand = brand_of(digits)
    needed = {"amex": 15, "diners": 14}.get(brand, 16)
    if len(digits) < needed:
        raise CardFormError("Your card number is incomplete.", "cardNumber")
    if len(digits) > 19 or not luhn_valid(digits):
        raise CardFormError("Your card number is invalid.", "cardNumber")
    month, year = parse_expiry(expiry)
    if (year, month) < today:
        raise CardFormError("Your card's expiration date is in the past.", "cardExpiry")
    if year > today[0] + 50:
        raise CardFormError("Your card's expiration year is invalid.", "cardExpiry")
    cvc = (cvc or "").strip()
    cvc_length = 4 if brand == "amex" else 3
    if len(cvc) < cvc_length or not cvc.isdigit():
        raise CardFormError("Your card's security code is incomplete.", "cardCvc")
    if len(cvc) > cvc_length:
        raise CardFormError("Your card's security code is invalid.", "cardCvc")
    return card_details(digits, month, year, cvc)


def card_details(number: str, exp_month: int, exp_year: int, cvc: str) -> CardDetails:
    """Details of a card that passed the form's checks; cards Stripe does not list as test
    cards behave as live cards used in test mode (declined)."""
    card = TEST_CARDS.get(number) or TestCard(number, brand_of(number), decline=LIVE_CARD_IN_TEST_MODE, description="Live card")
    return CardDetails(number=number, exp_month=exp_month, exp_year=exp_year, cvc=cvc, card=card)
