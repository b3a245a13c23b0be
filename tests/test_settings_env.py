"""The settings read the environment through django-environ, with the site's own rules kept."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.settings import Env


def reader(**environ: str) -> Env:
    env = Env()
    env.ENVIRON = environ
    return env


def test_blank_means_the_default_and_values_are_stripped():
    env = reader(BLANK="  ", PADDED="  eur ", HOSTS=" a.example, ,b.example ")
    assert env.bool("BLANK", True) is True
    assert env.int("BLANK", 7) == 7
    assert env.str("PADDED", "") == "eur"
    assert env.list("HOSTS", default=[]) == ["a.example", "b.example"]
    assert env.list("MISSING", default=["localhost"]) == ["localhost"]


def test_a_secret_starting_with_a_dollar_is_taken_as_it_is():
    assert reader(DJANGO_SECRET_KEY="$HOME-not-a-reference").str("DJANGO_SECRET_KEY", "") == "$HOME-not-a-reference"


def test_unreadable_booleans_and_numbers_stop_the_start_with_their_name():
    with pytest.raises(ImproperlyConfigured, match="DJANGO_DEBUG must be true or false, not 'maybe'"):
        reader(DJANGO_DEBUG="maybe").bool("DJANGO_DEBUG", False)
    with pytest.raises(ImproperlyConfigured, match="EMAIL_PORT must be a whole number, not '25a'"):
        reader(EMAIL_PORT="25a").int("EMAIL_PORT", 25)
    assert reader(X="Off").bool("X", True) is False
    assert reader(X="YES").bool("X", False) is True


def test_a_rate_is_read_as_a_number_and_anything_else_stops_the_start():
    assert reader(STRIPE_REQUESTS_PER_SECOND=" 12.5 ").float("STRIPE_REQUESTS_PER_SECOND", 20.0) == 12.5
    assert reader().float("STRIPE_REQUESTS_PER_SECOND", 20.0) == 20.0
    for raw in ("fast", "nan", "inf"):
        with pytest.raises(ImproperlyConfigured, match=f"STRIPE_REQUESTS_PER_SECOND must be a number, not '{raw}'"):
            reader(STRIPE_REQUESTS_PER_SECOND=raw).float("STRIPE_REQUESTS_PER_SECOND", 20.0)
