"""What a customer should be told, worked out from the recorded facts alone, and checks of what
they were told (e-mails, the success page's status panel, the booking page) against it.

Deliberately independent of the site: the wall-clock time comes from zoneinfo (not Django's
time-zone machinery), amounts are formatted here, and the sentences about money coming back are
written out from Booking.ended_reason and the Refund rows rather than through
bookings.selectors.booking_money_back or templates/bookings/_money_back.html. Otherwise a wrong
sentence or a wrong time would be expected as well as shown, and no check could fail.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from zoneinfo import ZoneInfo

DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]
SYMBOLS = {"eur": "€", "gbp": "£", "usd": "$"}
STATEMENT = "refunds take 5 to 10 days to reach your statement."
# A time of day: 9:30, 09:30, 23:45 (not part of a longer run of digits and colons).
TIME_OF_DAY = re.compile(r"(?<![\d:])([01]?\d|2[0-3]):([0-5]\d)(?![\d:])")
TAG = re.compile(r"<[^>]+>")
SPACE = re.compile(r"\s+")


def wall_clock(starts_at: dt.datetime, zone: str) -> tuple[str, str]:
    """The slot's start as the merchant's customers read it ("Sunday 29 March 2026, 03:30")
    and its time of day alone ("03:30"), by zoneinfo."""
    local = starts_at.astimezone(ZoneInfo(zone))
    return (f"{DAYS[local.weekday()]} {local.day} {MONTHS[local.month - 1]} {local.year}, "
            f"{local.hour:02d}:{local.minute:02d}", f"{local.hour:02d}:{local.minute:02d}")


def money(amount: int, currency: str) -> str:
    """Two-decimal currencies only (the simulation sells in EUR)."""
    major = f"{amount // 100:,}.{amount % 100:02d}"
    symbol = SYMBOLS.get(currency.lower())
    return f"{symbol}{major}" if symbol else f"{major} {currency.upper()}"


def readable(markup: str) -> str:
    """Text as a person reads it: tags dropped, entities decoded, runs of white space as one."""
    return SPACE.sub(" ", html.unescape(TAG.sub(" ", markup))).strip()


def times_of_day(text: str) -> set[str]:
    return {f"{int(h):02d}:{m}" for h, m in TIME_OF_DAY.findall(text)}


def reason_phrases(merchant: str) -> dict[str, tuple[str, ...]]:
    """Words that state a reason (lower case): any of them on a page or in an e-mail tells
    the customer that reason."""
    merchant = merchant.lower()
    return {
        "sold_out": ("sold out", "last seats went to someone else"),
        "slot_cancelled": ("cancelled this time", "this time was cancelled"),
        "merchant": (f"{merchant} cancelled your booking", f"cancelled by {merchant}",
                     f"cancelled and refunded by {merchant}", f"partly refunded by {merchant}",
                     f"{merchant} refunded ", f"{merchant}'s refund of"),
        "customer_cancel": ("you cancelled",),
    }


def reasons_stated(text: str, merchant: str) -> set[str]:
    lowered = text.lower()
    return {reason for reason, phrases in reason_phrases(merchant).items() if any(p in lowered for p in phrases)}


def _why(reason: str, merchant: str, *, charged: bool) -> str:
    if reason == "sold_out":
        doing = "paying" if charged else "checking out"
        return f"The last seats went to someone else while you were {doing}. Your booking is cancelled and holds no seats."
    if reason == "slot_cancelled":
        return f"{merchant} cancelled this time. Your booking is cancelled and holds no seats."
    if reason == "customer_cancel":
        return "You cancelled this booking, so it holds no seats."
    return f"{merchant} cancelled your booking, so it holds no seats."


def refund_email_sentence(
    *, reason: str, amount: int, paid: int, currency: str, merchant: str, ended_reason: str = ""
) -> str:
    """The sentence of the e-mail about one refund, sent once the provider created it: while the
    booking stood (`ended_reason` ""), or after it ended for `ended_reason`."""
    if reason == "merchant" and amount < paid:
        partly = f"{merchant} refunded {money(amount, currency)} of your {money(paid, currency)} payment."
        if not ended_reason:
            return f"{partly} Your booking still stands. The refund has been made; {STATEMENT}"
        if ended_reason != "merchant":
            # Given back while the booking stood; the booking ended since, and not by the merchant.
            return f"{partly} {_why(ended_reason, merchant, charged=True)} The refund has been made; {STATEMENT}"
    if amount == paid:
        how = f"Your payment of {money(amount, currency)} has been refunded in full; {STATEMENT}"
    else:
        how = f"A refund of {money(amount, currency)} has been made; {STATEMENT}"
    return f"{_why(reason, merchant, charged=True)} {how}"


def refund_failed_email_sentence(
    *, reason: str, amount: int, paid: int, currency: str, merchant: str, support_email: str, ended_reason: str = ""
) -> str:
    """The sentence of the e-mail telling that a refund, told as made, failed: while the booking
    stood (`ended_reason` ""), or after it ended for `ended_reason`."""
    reach = f"; you can reach them at {support_email}" if support_email else ""
    alerted = f"{merchant} has been alerted and will refund you{reach}."
    if reason == "merchant" and ended_reason != "merchant":
        # The merchant's refund of a part, given while the booking stood.
        stands = _why(ended_reason, merchant, charged=True) if ended_reason else "Your booking still stands."
        return (f"{merchant}'s refund of {money(amount, currency)} of your {money(paid, currency)} payment did not "
                f"go through. {stands} {alerted}")
    why = _why(ended_reason or reason, merchant, charged=True)
    return f"{why} The refund of {money(amount, currency)} did not go through. {alerted}"


def cancelled_email_sentence(
    *, reason: str, merchant: str, kept: bool = False, back_before: int = 0, currency: str = "eur"
) -> str:
    """The sentence of the e-mail about a booking ended with nothing charged (a 100% code), or
    with nothing more refunded (cancelled by its customer late, the policy keeping the rest of
    what the merchant had not already refunded: `back_before`)."""
    if kept:
        return f"{_why(reason, merchant, charged=True)} {kept_sentence(merchant, back_before, currency)}"
    return f"{_why(reason, merchant, charged=False)} Nothing was charged, so there is nothing to refund."


def kept_sentence(merchant: str, back_before: int, currency: str) -> str:
    late = f"You cancelled after the free cancellation deadline, so under {merchant}'s cancellation policy nothing "
    if not back_before:
        return late + "is refunded."
    return (late + f"more is refunded: the {money(back_before, currency)} {merchant} refunded before you cancelled "
            "is what comes back.")


def page_sentence(booking, refunds, *, merchant: str, support_email: str, owed: int | None = None) -> str | None:
    """The sentence the pages show about money coming back, from the booking's final facts and
    its Refund rows; None where they should say nothing of it. `owed`: what a booking whose
    refund failed is still owed (by default all that was not refunded; for a customer's
    cancellation, the caller works it out from the policy)."""
    currency, paid = booking.currency, booking.amount_paid
    live = [r for r in refunds if r.status != "failed"]
    created = all(r.status in ("pending", "succeeded") for r in live)
    if booking.status == "confirmed":
        if not live:
            return None
        state = "has been made" if created else "is on its way"
        return (f"{merchant} refunded {money(sum(r.amount for r in live), currency)} of your {money(paid, currency)} "
                f"payment. Your booking still stands. The refund {state}; {STATEMENT}")
    if booking.status not in ("refund_due", "refunded", "refund_failed", "cancelled"):
        return None
    why = _why(booking.ended_reason, merchant, charged=paid > 0)
    if paid == 0:
        return f"{why} Nothing was charged, so there is nothing to refund."
    if booking.status == "cancelled" and booking.ended_reason == "customer_cancel":
        return f"{why} {kept_sentence(merchant, sum(r.amount for r in live), currency)}"
    if booking.status == "refund_failed":
        reach = f"; you can reach them at {support_email}" if support_email else ""
        owed = paid - booking.amount_refunded if owed is None else owed
        return (f"{why} The refund of {money(owed, currency)} did not go through. "
                f"{merchant} has been alerted and will refund you{reach}.")
    if booking.status == "refund_due":
        amount, verb, full_verb = sum(r.amount for r in live), "is on its way", "is being"
    else:
        amount, verb, full_verb = booking.amount_refunded, "has been made", "has been"
    if amount == paid:
        return f"{why} Your payment of {money(amount, currency)} {full_verb} refunded in full; {STATEMENT}"
    return f"{why} A refund of {money(amount, currency)} {verb}; {STATEMENT}"


def check_email(message, *, expected_sentence: str | None, allowed_reasons: set[str], when: str, time: str,
                zone: str, merchant: str) -> list[str]:
    """What is wrong in one e-mail (text and HTML bodies alike)."""
    problems = []
    bodies = [("text", SPACE.sub(" ", message.body))]
    bodies += [("HTML", readable(content)) for content, kind in message.alternatives if kind == "text/html"]
    for kind, text in bodies:
        where = f"e-mail '{message.subject}' ({kind})"
        if expected_sentence is not None and expected_sentence not in text:
            problems.append(f"{where} does not say: {expected_sentence!r}; it says: {text[:600]!r}")
        wrong = reasons_stated(text, merchant) - allowed_reasons
        if wrong:
            problems.append(f"{where} states the reason {sorted(wrong)}, recorded {sorted(allowed_reasons) or 'none'}")
        if f"{when} ({zone})" not in text:
            problems.append(f"{where} does not give the time as {when} ({zone}): {text[:600]!r}")
        others = times_of_day(text) - {time}
        if others:
            problems.append(f"{where} states other times of day {sorted(others)}; the slot starts at {time} {zone}")
    return problems


def check_page(name: str, markup: str, *, expected_sentence: str | None, allowed_reasons: set[str],
               when: str | None, time: str, zone: str, merchant: str) -> list[str]:
    """What is wrong on one page: its money-back sentence, reasons, and times of day. `when` is
    the start the page must show (None where it shows none)."""
    problems = []
    text = readable(markup)
    if expected_sentence is None:
        if 'data-testid="money-back"' in markup:
            problems.append(f"{name} tells of money back where none came back: {text[:600]!r}")
    elif expected_sentence not in text:
        problems.append(f"{name} does not say: {expected_sentence!r}; it says: {text[:600]!r}")
    wrong = reasons_stated(text, merchant) - allowed_reasons
    if wrong:
        problems.append(f"{name} states the reason {sorted(wrong)}, recorded {sorted(allowed_reasons) or 'none'}")
    if when is not None and f"{when} ({zone})" not in text:
        problems.append(f"{name} does not give the time as {when} ({zone}): {text[:600]!r}")
    others = times_of_day(text) - {time}
    if others:
        problems.append(f"{name} states other times of day {sorted(others)}; the slot starts at {time} {zone}")
    return problems
