from django import template

from bookings.money import format_money

register = template.Library()


@register.simple_tag
def money(amount: int, currency: str) -> str:
    return format_money(amount, currency)
