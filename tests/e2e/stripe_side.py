"""The Stripe a browser test runs against: the in-process emulator, or real Stripe test mode.

Both answer the same questions, so a card scenario reads the same for either; only the
emulator has a control API (`control`) to hold webhooks, expire sessions on the spot and wait
until every webhook has been answered.
"""

import time
from collections.abc import Callable

from payments import stripe_api
from stripe_emulator.control import EmulatorControl


class EmulatedStripe:
    real = False
    # Milliseconds a page may take to show what Stripe did.
    timeout = 10_000

    def __init__(self, control: EmulatorControl):
        self.control = control

    def settle(self) -> dict:
        """Wait until every webhook sent so far has been answered (held ones aside)."""
        state = self.control.wait_for_webhooks(timeout=20)
        assert state["idle"] or state["held"], f"webhooks still on their way: {state}"
        return state

    def eventually(self, condition: Callable[[], bool], what: str) -> None:
        """`condition` holds once the webhooks are in; the emulator says when that is."""
        self.settle()
        assert condition(), what

    def expire_session(self, session_id: str) -> None:
        self.control.expire_session(session_id)

    def webhook_answers(self) -> list[int | None]:
        return [delivery["status"] for delivery in self.control.deliveries()]

    def refunds_of(self, payment_intent_id: str, *, stripe_account: str = "") -> list[dict]:
        """The payment's refunds, read on the account it was made on (a merchant's connected account with Connect)."""
        return stripe_api.refunds_of_payment(payment_intent_id, stripe_account=stripe_account)

    def create_free_promotion_code(self, code: str) -> str:
        return _create_free_promotion_code(code)


class RealStripe:
    """Stripe test mode: webhooks come through `stripe listen`, with no way to hold or count them."""

    real = True
    control = None
    timeout = 60_000

    def __init__(self, *, webhook_url: str, port: int | None):
        self.webhook_url = webhook_url
        self.port = port

    def settle(self) -> dict:
        return {}

    def eventually(self, condition: Callable[[], bool], what: str, *, seconds: float = 60) -> None:
        """Stripe says nothing about deliveries still to come: wait for the condition itself."""
        deadline = time.monotonic() + seconds
        while not condition():
            assert time.monotonic() < deadline, what
            time.sleep(0.5)

    def expire_session(self, session_id: str) -> None:
        stripe_api.stripe_client().v1.checkout.sessions.expire(session_id)

    def refunds_of(self, payment_intent_id: str, *, stripe_account: str = "") -> list[dict]:
        """The payment's refunds, read on the account it was made on (a merchant's connected account with Connect)."""
        return stripe_api.refunds_of_payment(payment_intent_id, stripe_account=stripe_account)

    def create_free_promotion_code(self, code: str) -> str:
        # Codes are unique per account and live on between runs.
        return _create_free_promotion_code(f"{code}{int(time.time())}")


def _create_free_promotion_code(code: str) -> str:
    client = stripe_api.stripe_client()
    coupon = client.v1.coupons.create(params={"percent_off": 100, "duration": "once", "name": "Free seat"})
    client.v1.promotion_codes.create(params={"promotion": {"type": "coupon", "coupon": coupon.id}, "code": code})
    return code
