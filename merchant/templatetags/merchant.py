from django import template

from merchant.stripe_account_words import disabled_reason_sentence, requirement_labels

register = template.Library()


@register.filter
def percent_of(part, whole) -> str:
    """`part` as a percentage of `whole`, between 0 and 100, for an SVG width ("37.5")."""
    try:
        part, whole = float(part), float(whole)
    except (TypeError, ValueError):
        return "0"
    if whole <= 0:
        return "0"
    return f"{max(0.0, min(100.0, part * 100 / whole)):.1f}"


@register.filter
def stripe_requirements(fields) -> list[str]:
    """Stripe's due requirements as the distinct things a merchant gives (see stripe_account_words)."""
    return requirement_labels(fields)


@register.filter
def stripe_disabled_reason(code: str) -> str:
    return disabled_reason_sentence(code)
