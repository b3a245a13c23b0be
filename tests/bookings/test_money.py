"""Amounts as people read them: integer minor units in, Babel's formatting out, with the
decimals Stripe counts for each currency."""

import pytest
from django.template import Context, Template

from bookings.money import format_money


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        (1800, "eur", "€18.00"),
        (1250, "gbp", "£12.50"),
        (123450, "usd", "$1,234.50"),
        (1500, "jpy", "¥1,500"),  # zero-decimal: 1500 minor units are 1,500 yen
        (1500, "kwd", "KWD\u00a01.500"),  # three decimals
        (1250, "chf", "CHF\u00a012.50"),
        (300, "cad", "CA$3.00"),
        (99_999_999, "eur", "€999,999.99"),
    ],
)
def test_an_amount_in_minor_units_reads_with_its_currency_s_symbol_and_decimals(amount, currency, shown):
    assert format_money(amount, currency) == shown
    assert format_money(amount, currency.upper()) == shown


def test_the_money_tag_is_the_same_formatting():
    html = Template("{% load money %}{% money amount currency %}").render(Context({"amount": 1500, "currency": "jpy"}))

    assert html == "¥1,500"
