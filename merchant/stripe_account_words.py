"""What Stripe's account requirements and disabled reasons mean, in a merchant's words.

Stripe names what it still needs as dotted field paths (`individual.dob.day`,
`person_1ABC.address.city`) and why an account cannot charge as codes (`requirements.past_due`);
the dashboard says what to do instead. Unknown names and codes still get a plain sentence."""

# Longest prefix first wins; several fields of one thing (a date of birth's day, month and year)
# read as one thing to give.
_REQUIREMENT_LABELS = (
    ("business_profile.mcc", "what your business sells (its industry)"),
    ("business_profile.url", "your business website or a product description"),
    ("business_profile.product_description", "your business website or a product description"),
    ("business_profile.support_phone", "a support phone number"),
    ("business_profile", "your business profile"),
    ("business_type", "the type of business (individual or company)"),
    ("external_account", "a bank account for your payouts"),
    ("tos_acceptance", "your acceptance of Stripe's terms of service"),
    ("settings.payments.statement_descriptor", "the name shown on customers' card statements"),
    ("individual.dob", "your date of birth"),
    ("individual.address", "your home address"),
    ("individual.first_name", "your name"),
    ("individual.last_name", "your name"),
    ("individual.email", "your e-mail address"),
    ("individual.phone", "your phone number"),
    ("individual.id_number", "your ID number"),
    ("individual.ssn_last_4", "your ID number"),
    ("individual.verification", "a photo of your ID document"),
    ("individual", "your personal details"),
    ("company.name", "the company's name"),
    ("company.tax_id", "the company's tax ID"),
    ("company.address", "the company's address"),
    ("company.phone", "the company's phone number"),
    ("company.verification", "a document proving the company's registration"),
    ("company.owners_provided", "the company's owners"),
    ("company.directors_provided", "the company's directors"),
    ("company.executives_provided", "the company's executives"),
    ("company", "the company's details"),
    ("representative", "the details of the company's representative"),
    ("owners", "the details of the company's owners"),
    ("directors", "the details of the company's directors"),
    ("executives", "the details of the company's executives"),
)

_DISABLED_REASONS = {
    "requirements.past_due": "Stripe needs more details from you before you can take payments.",
    "requirements.pending_verification": "Stripe is checking the details you gave; this usually takes a few minutes to a day.",
    "action_required.requested_capabilities": "Stripe needs you to accept card payments in your Stripe account settings.",
    "under_review": "Stripe is reviewing your account.",
    "listed": "Stripe is reviewing your account (it matched a watch list).",
    "platform_paused": "The site has paused payments to your account; contact us.",
    "rejected.fraud": "Stripe rejected your account (suspected fraud).",
    "rejected.terms_of_service": "Stripe rejected your account (its terms of service).",
    "rejected.listed": "Stripe rejected your account (it matched a watch list).",
    "rejected.incomplete_verification": "Stripe rejected your account (verification was not completed in time).",
    "rejected.other": "Stripe rejected your account.",
    "rejected.platform_fraud": "The site rejected your account (suspected fraud).",
    "rejected.platform_terms_of_service": "The site rejected your account (its terms).",
    "rejected.platform_other": "The site rejected your account.",
    "other": "Stripe has disabled your account for now; Stripe's support can tell you why.",
}


def requirement_label(field: str) -> str:
    """One requirement of Stripe's as the thing to give ("individual.dob.day" → "your date of birth")."""
    path = field.strip()
    if path.startswith("person_"):
        # A person of a company (`person_1ABC.dob.day`): whose details, not which person object.
        return "the details of a person of your company"
    for prefix, label in _REQUIREMENT_LABELS:
        if path == prefix or path.startswith(prefix + "."):
            return label
    return f"other details Stripe asks for ({path.replace('_', ' ').replace('.', ', ')})"


def requirement_labels(fields) -> list[str]:
    """Stripe's requirements as the distinct things to give, in Stripe's order."""
    labels: list[str] = []
    for field in fields or ():
        label = requirement_label(str(field))
        if label not in labels:
            labels.append(label)
    return labels


def disabled_reason_sentence(code: str) -> str:
    """Why Stripe will not let the account charge, as a sentence; empty for no reason."""
    code = (code or "").strip()
    if not code:
        return ""
    if code in _DISABLED_REASONS:
        return _DISABLED_REASONS[code]
    if code.startswith("rejected"):
        return _DISABLED_REASONS["rejected.other"]
    return _DISABLED_REASONS["other"]
