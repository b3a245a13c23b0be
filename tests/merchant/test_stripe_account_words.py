"""The dashboard says what Stripe still needs and why an account cannot charge in words, not
Stripe's field paths and codes."""

import pytest
from django.urls import reverse

from bookings.models import Merchant
from merchant.stripe_account_words import disabled_reason_sentence, requirement_label, requirement_labels


@pytest.mark.parametrize(
    "field, label",
    [
        ("individual.dob.day", "your date of birth"),
        ("individual.address.postal_code", "your home address"),
        ("business_profile.mcc", "what your business sells (its industry)"),
        ("external_account", "a bank account for your payouts"),
        ("tos_acceptance.ip", "your acceptance of Stripe's terms of service"),
        ("company.tax_id", "the company's tax ID"),
        ("person_1NxYz.verification.document", "the details of a person of your company"),
        ("relationship.title", "other details Stripe asks for (relationship, title)"),
    ],
)
def test_each_requirement_reads_as_the_thing_to_give(field, label):
    assert requirement_label(field) == label


def test_fields_of_one_thing_are_asked_for_once_in_stripes_order():
    due = ["individual.dob.day", "individual.dob.month", "individual.dob.year", "external_account",
           "individual.first_name", "individual.last_name"]
    assert requirement_labels(due) == ["your date of birth", "a bank account for your payouts", "your name"]
    assert requirement_labels(None) == []


@pytest.mark.parametrize(
    "code, sentence",
    [
        ("requirements.past_due", "Stripe needs more details from you before you can take payments."),
        ("rejected.fraud", "Stripe rejected your account (suspected fraud)."),
        ("rejected.something_new", "Stripe rejected your account."),
        ("something_new", "Stripe has disabled your account for now; Stripe's support can tell you why."),
        ("", ""),
    ],
)
def test_each_disabled_reason_reads_as_a_sentence(code, sentence):
    assert disabled_reason_sentence(code) == sentence


@pytest.fixture
def signed_in(client, merchant):
    client.force_login(merchant.user)
    return client


@pytest.mark.django_db
def test_the_dashboard_lists_what_stripe_needs_in_words(settings, signed_in, merchant):
    settings.CONNECT_ENABLED = True
    Merchant.objects.filter(pk=merchant.pk).update(
        stripe_account_id="acct_1Words", stripe_account_type="express",
        stripe_requirements_due=["business_profile.url", "individual.dob.day", "individual.dob.month"],
        stripe_disabled_reason="requirements.past_due",
    )
    page = signed_in.get(reverse("merchant:dashboard")).content.decode()
    assert "Stripe still needs:" in page
    assert "<li>Your business website or a product description</li>" in page
    assert page.count("<li>Your date of birth</li>") == 1
    assert "Stripe needs more details from you before you can take payments." in page
    assert "individual.dob" not in page and "requirements.past_due" not in page


@pytest.mark.django_db
def test_a_rejected_account_says_why_in_words(settings, signed_in, merchant):
    settings.CONNECT_ENABLED = True
    Merchant.objects.filter(pk=merchant.pk).update(
        stripe_account_id="acct_1Words", stripe_account_type="express", stripe_disabled_reason="rejected.terms_of_service"
    )
    page = signed_in.get(reverse("merchant:dashboard")).content.decode()
    assert "Stripe rejected your account (its terms of service). You are not taking bookings" in page
    assert "rejected.terms_of_service" not in page
