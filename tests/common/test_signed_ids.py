"""Signed row ids in addresses: read back only with the same salt, within their age, and only
as the integer they were made from."""

import datetime as dt

from django.core import signing

from common.signed_ids import SIGNED_ID_MAX_LENGTH, signed_id, signed_id_read


def test_a_token_reads_back_as_its_id_with_its_own_salt_only():
    token = signed_id(42, salt="one")
    assert signed_id_read(token, salt="one") == 42
    assert signed_id_read(token, salt="two") is None
    assert signed_id_read(token[:-1] + ("A" if token[-1] != "A" else "B"), salt="one") is None


def test_anything_else_is_none():
    assert signed_id_read("", salt="one") is None
    assert signed_id_read("é" + signed_id(1, salt="one"), salt="one") is None
    assert signed_id_read("x" * (SIGNED_ID_MAX_LENGTH + 1), salt="one") is None
    assert signed_id_read(signing.dumps("42", salt="one"), salt="one") is None  # not an integer
    assert signed_id_read(signing.dumps(True, salt="one"), salt="one") is None


def test_an_old_token_is_refused_past_its_age():
    token = signed_id(7, salt="one")
    assert signed_id_read(token, salt="one", max_age=dt.timedelta(days=1)) == 7
    assert signed_id_read(token, salt="one", max_age=dt.timedelta(seconds=-1)) is None  # already older than that
