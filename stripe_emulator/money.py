"""Amounts are integers in the currency's minor unit; this module only knows how to show them."""

from __future__ import annotations

ZERO_DECIMAL = {
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf",
}
SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥", "cad": "CA$", "aud": "A$", "chf": "CHF ", "inr": "₹"}

# Stripe's currencies (ISO 4217, lowercase); enough to refuse a typo as Stripe does.
SUPPORTED = {
    "usd", "aed", "afn", "all", "amd", "ang", "aoa", "ars", "aud", "awg", "azn", "bam", "bbd", "bdt", "bgn", "bif",
    "bmd", "bnd", "bob", "brl", "bsd", "bwp", "byn", "bzd", "cad", "cdf", "chf", "clp", "cny", "cop", "crc", "cve",
    "czk", "djf", "dkk", "dop", "dzd", "egp", "etb", "eur", "fjd", "fkp", "gbp", "gel", "gip", "gmd", "gnf", "gtq",
    "gyd", "hkd", "hnl", "htg", "huf", "idr", "ils", "inr", "isk", "jmd", "jpy", "kes", "kgs", "khr", "kmf", "krw",
    "kyd", "kzt", "lak", "lbp", "lkr", "lrd", "lsl", "mad", "mdl", "mga", "mkd", "mmk", "mnt", "mop", "mur", "mvr",
    "mwk", "mxn", "myr", "mzn", "nad", "ngn", "nio", "nok", "npr", "nzd", "pab", "pen", "pgk", "php", "pkr", "pln",
    "pyg", "qar", "ron", "rsd", "rub", "rwf", "sar", "sbd", "scr", "sek", "sgd", "shp", "sle", "sos", "srd", "std",
    "szl", "thb", "tjs", "top", "try", "ttd", "twd", "tzs", "uah", "ugx", "uyu", "uzs", "vnd", "vuv", "wst", "xaf",
    "xcd", "xof", "xpf", "yer", "zar", "zmw",
}


def format_amount(amount: int, currency: str) -> str:
    currency = currency.lower()
    negative = amount < 0
    amount = abs(amount)
    if currency in ZERO_DECIMAL:
        number = f"{amount:,}"
    else:
        number = f"{amount // 100:,}.{amount % 100:02d}"
    symbol = SYMBOLS.get(currency)
    text = f"{symbol}{number}" if symbol else f"{number} {currency.upper()}"
    return f"-{text}" if negative else text
