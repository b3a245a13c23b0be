"""Money is an integer in the currency's minor unit everywhere; this module is where it meets people."""

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation, localcontext

from babel.numbers import format_currency, get_currency_symbol
from django.conf import settings

# Currencies Stripe charges without a minor unit, and the three-decimal ones it supports.
ZERO_DECIMAL_CURRENCIES = frozenset(
    {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"}
)
THREE_DECIMAL_CURRENCIES = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})

# Stripe charges at most eight digits in the minor unit in one payment (999,999.99 in euros).
STRIPE_AMOUNT_MAX = 99_999_999

# Amounts read as in American English whatever the visitor's language: "$12.50", "€18.00",
# "£12.50", "¥1,500", "CA$3.00" (en_GB would write "US$12.50").
MONEY_LOCALE = "en_US"

# The presentment currencies this site offers merchants: a subset of what Stripe supports for cards.
SUPPORTED_CURRENCIES = {
    "aud": "Australian dollar",
    "cad": "Canadian dollar",
    "chf": "Swiss franc",
    "czk": "Czech koruna",
    "dkk": "Danish krone",
    "eur": "Euro",
    "gbp": "Pound sterling",
    "huf": "Hungarian forint",
    "jpy": "Japanese yen",
    "nok": "Norwegian krone",
    "nzd": "New Zealand dollar",
    "pln": "Polish złoty",
    "sek": "Swedish krona",
    "usd": "US dollar",
}


def currency_exponent(currency: str) -> int:
    currency = currency.lower()
    if currency in ZERO_DECIMAL_CURRENCIES:
        return 0
    if currency in THREE_DECIMAL_CURRENCIES:
        return 3
    return 2


def format_money(amount: int, currency: str) -> str:
    """An amount in minor units as people read it, with the decimals Stripe counts for the
    currency (none for JPY, three for KWD): format_money(1850, "eur") == "€18.00"."""
    code = currency.upper()
    exponent = currency_exponent(currency)
    # A symbol made of letters ("CHF", "KWD") is kept apart from the digits, as CLDR advises.
    gap = "\u00a0" if get_currency_symbol(code, locale=MONEY_LOCALE).isalpha() else ""
    pattern = f"¤{gap}#,##0" + (f".{'0' * exponent}" if exponent else "")
    return format_currency(from_minor_units(amount, currency), code, pattern, locale=MONEY_LOCALE, currency_digits=False)


def to_minor_units(value: Decimal | str, currency: str) -> int:
    """Turn an amount typed by a person ("12.50") into minor units, refusing what does not fit."""
    exponent = currency_exponent(currency)
    try:
        major = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError("Enter an amount such as 12.50.") from None
    if not major.is_finite():
        raise ValueError("Enter an amount such as 12.50.")
    # Checked before any arithmetic: "1e999999999" would overflow the decimal context, and
    # "1e-999999999" would silently round to zero.
    if major.adjusted() > 15:
        raise ValueError("That amount is too large.")
    with localcontext() as context:
        context.prec = 40
        if major.quantize(Decimal(1).scaleb(-exponent)) != major:
            places = "no decimals" if exponent == 0 else f"at most {exponent} decimals"
            raise ValueError(f"{currency.upper()} amounts have {places}.")
        return int(major.scaleb(exponent))


def from_minor_units(amount: int, currency: str) -> Decimal:
    return Decimal(amount).scaleb(-currency_exponent(currency))


def platform_fee(amount: int) -> int:
    """The platform's fee on a direct charge of `amount` minor units (Connect):
    PLATFORM_FEE_PERCENT of it, rounded half up to a whole minor unit, plus PLATFORM_FEE_FIXED,
    never more than the amount itself (so a small price is never charged more than it costs).
    0 for nothing to pay."""
    if amount <= 0:
        return 0
    percent = (Decimal(amount) * Decimal(settings.PLATFORM_FEE_PERCENT) / 100).quantize(
        Decimal(1), rounding=ROUND_HALF_UP
    )
    return min(amount, int(percent) + settings.PLATFORM_FEE_FIXED)
