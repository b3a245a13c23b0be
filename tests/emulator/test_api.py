"""The REST API as Stripe speaks it: keys, headers, lists and pagination, customers and search,
products, prices, coupons, promotion codes, portal sessions, events."""

from __future__ import annotations

import base64

import pytest
import requests
import stripe

from .helpers import API_KEY, create_session, sdk_client


def test_requests_need_a_test_secret_key(emulator):
    url = f"{emulator.url}/v1/customers"
    missing = requests.get(url)
    assert missing.status_code == 401
    assert missing.json()["error"]["message"].startswith("You did not provide an API key.")
    assert missing.json()["error"]["type"] == "invalid_request_error"
    assert missing.headers["Request-Id"].startswith("req_")
    malformed = requests.get(url, headers={"Authorization": "Bearer sk_live_1234567890abcdef"})
    assert malformed.status_code == 401
    assert malformed.json()["error"]["message"] == "Invalid API Key provided: sk_live_************cdef"
    assert "1234567890abcdef" not in malformed.text
    basic = requests.get(url, headers={"Authorization": "Basic " + base64.b64encode(f"{API_KEY}:".encode()).decode()})
    assert basic.status_code == 200
    assert requests.get(url, auth=(API_KEY, "")).status_code == 200
    with pytest.raises(stripe.AuthenticationError):
        stripe.StripeClient("sk_test_", base_addresses={"api": emulator.url}).v1.customers.list()


def test_every_answer_has_request_id_and_stripe_version(emulator, client):
    response = requests.get(f"{emulator.url}/v1/customers", headers={"Authorization": f"Bearer {API_KEY}"})
    assert response.headers["Request-Id"].startswith("req_")
    assert response.headers["Stripe-Version"] == stripe.api_version
    pinned = requests.get(f"{emulator.url}/v1/customers",
                          headers={"Authorization": f"Bearer {API_KEY}", "Stripe-Version": "2024-06-20"})
    assert pinned.headers["Stripe-Version"] == "2024-06-20"
    unknown = requests.get(f"{emulator.url}/v1/nothing", headers={"Authorization": f"Bearer {API_KEY}"})
    assert unknown.status_code == 404
    assert unknown.json()["error"]["message"].startswith("Unrecognized request URL (GET: /v1/nothing).")
    assert unknown.headers["Request-Id"].startswith("req_")


def test_customers_create_retrieve_update_and_events(client, control):
    customer = client.v1.customers.create(params={"email": "jenny@example.com", "name": "Jenny Rosen",
                                                  "metadata": {"booking": "7"}, "phone": "+15555550100"})
    assert customer.id.startswith("cus_") and customer.object == "customer" and customer.livemode is False
    assert client.v1.customers.retrieve(customer.id).email == "jenny@example.com"
    updated = client.v1.customers.update(customer.id, params={"name": "Jenny R.", "metadata": {"booking": "", "vip": "yes"}})
    assert updated.name == "Jenny R." and updated.metadata.to_dict() == {"vip": "yes"}
    event = control.events(type="customer.updated")[0]
    assert event["data"]["previous_attributes"] == {"metadata": {"booking": "7", "vip": None}, "name": "Jenny Rosen"}
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.customers.retrieve("cus_doesnotexist")
    assert missing.value.http_status == 404
    assert missing.value.code == "resource_missing"
    assert missing.value.user_message == "No such customer: 'cus_doesnotexist'"
    with pytest.raises(stripe.InvalidRequestError) as bad_email:
        client.v1.customers.create(params={"email": "not-an-email"})
    assert bad_email.value.code == "email_invalid"


def test_lists_paginate_and_the_sdk_auto_pages(client):
    created = [client.v1.customers.create(params={"email": f"page{i}@example.com"}).id for i in range(25)]
    first = client.v1.customers.list(params={"limit": 10})
    assert first.object == "list" and first.url == "/v1/customers" and first.has_more
    assert [c.id for c in first.data] == list(reversed(created))[:10]
    second = client.v1.customers.list(params={"limit": 10, "starting_after": first.data[-1].id})
    assert [c.id for c in second.data] == list(reversed(created))[10:20]
    back = client.v1.customers.list(params={"limit": 10, "ending_before": second.data[0].id})
    assert [c.id for c in back.data] == [c.id for c in first.data]
    assert [c.id for c in first.auto_paging_iter()] == list(reversed(created))
    assert client.v1.customers.list(params={"email": "page3@example.com"}).data[0].id == created[3]
    with pytest.raises(stripe.InvalidRequestError) as too_big:
        client.v1.customers.list(params={"limit": 101})
    assert too_big.value.param == "limit"


def test_customer_search(client):
    jenny = client.v1.customers.create(params={"email": "jenny@example.com", "name": "Jenny Rosen",
                                               "metadata": {"booking": "b-1"}})
    client.v1.customers.create(params={"email": "jenny@example.org", "name": "Jenny Other", "metadata": {"booking": "b-2"}})
    client.v1.customers.create(params={"email": "bob@example.com", "name": "Bob"})

    def search(query):
        return [c.id for c in client.v1.customers.search(params={"query": query}).data]

    assert search("email:'jenny@example.com'") == [jenny.id]
    assert search("name:'Jenny Rosen' AND metadata['booking']:'b-1'") == [jenny.id]
    assert search('metadata["booking"]:"b-1"') == [jenny.id]
    assert len(search("name~'Jenny'")) == 2
    assert len(search("email:'jenny@example.com' OR email:'bob@example.com'")) == 2
    result = client.v1.customers.search(params={"query": "name~'Jen'", "limit": 1})
    assert result.object == "search_result" and result.has_more and result.next_page
    assert len(list(result.auto_paging_iter())) == 2
    with pytest.raises(stripe.InvalidRequestError) as broken:
        client.v1.customers.search(params={"query": "email='x'"})
    assert broken.value.param == "query"


def test_products_prices_coupons_and_promotion_codes(client):
    product = client.v1.products.create(params={"name": "Harbour tour", "default_price_data": {"currency": "eur", "unit_amount": 2500}})
    assert product.id.startswith("prod_") and product.default_price.startswith("price_")
    assert client.v1.products.retrieve(product.id).name == "Harbour tour"
    price = client.v1.prices.create(params={"product": product.id, "currency": "EUR", "unit_amount": 3000, "lookup_key": "tour"})
    assert (price.currency, price.unit_amount, price.type) == ("eur", 3000, "one_time")
    assert client.v1.prices.retrieve(price.id).product == product.id
    assert {p.id for p in client.v1.prices.list(params={"product": product.id}).data} == {price.id, product.default_price}
    percent = client.v1.coupons.create(params={"percent_off": 15.5, "duration": "once", "name": "Spring"})
    fixed = client.v1.coupons.create(params={"amount_off": 500, "currency": "eur", "id": "FIVE-OFF"})
    assert fixed.id == "FIVE-OFF" and fixed.valid and percent.percent_off == 15.5
    assert {c.id for c in client.v1.coupons.list().data} == {percent.id, fixed.id}
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.coupons.create(params={"amount_off": 500})
    code = client.v1.promotion_codes.create(params={"coupon": fixed.id, "code": "HARBOUR5"})
    newer = client.v1.promotion_codes.create(params={"promotion": {"type": "coupon", "coupon": percent.id}})
    assert code.id.startswith("promo_") and code.coupon.id == fixed.id and code.promotion.coupon == fixed.id
    assert newer.coupon.id == percent.id and newer.active
    assert [p.id for p in client.v1.promotion_codes.list(params={"code": "HARBOUR5"}).data] == [code.id]
    assert [p.id for p in client.v1.promotion_codes.list(params={"coupon": percent.id}).data] == [newer.id]
    with pytest.raises(stripe.InvalidRequestError) as taken:
        client.v1.promotion_codes.create(params={"coupon": fixed.id, "code": "harbour5"})
    assert taken.value.param == "code"


def test_portal_session_page_shows_payments_refunds_and_card(client, control, emulator):
    customer = client.v1.customers.create(params={"email": "portal@example.com", "name": "Pat Portal"})
    session = create_session(client, customer=customer.id)
    control.pay_session(session.id, "5555555555554444", name="Pat Portal")
    intent = client.v1.checkout.sessions.retrieve(session.id).payment_intent
    client.v1.refunds.create(params={"payment_intent": intent, "amount": 1000})
    portal = client.v1.billing_portal.sessions.create(params={"customer": customer.id, "return_url": "https://shop.example/account"})
    assert portal.id.startswith("bps_") and portal.url == f"{emulator.url}/p/session/{portal.id}"
    assert portal.customer == customer.id and portal.configuration.startswith("bpc_")
    page = requests.get(portal.url)
    assert page.status_code == 200
    for text in ("Return to", 'href="https://shop.example/account"', "€25.00", "Harbour tour, 10:00", "Partially refunded",
                 "Refund of €10.00", "Mastercard", "4444", "receipt-link"):
        assert text in page.text
    control.advance_clock(3601)
    assert 'data-testid="portal-expired"' in requests.get(portal.url).text
    unused = client.v1.billing_portal.sessions.create(params={"customer": customer.id})
    control.advance_clock(301)
    assert 'data-testid="portal-expired"' in requests.get(unused.url).text
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.billing_portal.sessions.create(params={"customer": "cus_nobody"})
    assert missing.value.param == "customer"


def test_events_list_filters(client, control):
    customer = client.v1.customers.create(params={"email": "events@example.com"})
    client.v1.customers.update(customer.id, params={"name": "Eve"})
    session = create_session(client)
    control.pay_session(session.id)
    created = client.v1.events.list(params={"type": "customer.created"}).data
    assert [e.data.object.id for e in created] == [customer.id]
    several = client.v1.events.list(params={"types": ["customer.created", "customer.updated"]}).data
    assert [e.type for e in several] == ["customer.updated", "customer.created"]
    assert {e.type for e in client.v1.events.list(params={"type": "charge.*"}).data} == {"charge.succeeded"}
    now = control.clock()["now"]
    assert client.v1.events.list(params={"created": {"gt": now + 10}}).data == []
    assert len(client.v1.events.list(params={"created": {"gte": now - 60}, "limit": 100}).data) >= 5
    event = client.v1.events.retrieve(created[0].id)
    assert event.object == "event" and event.type == "customer.created"
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.events.retrieve("evt_missing")
    assert missing.value.user_message == "No such event: 'evt_missing'"


def test_payment_intent_retrieve_and_expand(client, control):
    session = create_session(client, customer_creation="always")
    control.pay_session(session.id, email="exp@example.com")
    expanded = client.v1.checkout.sessions.retrieve(
        session.id, params={"expand": ["payment_intent.latest_charge", "payment_intent.payment_method", "customer", "line_items"]}
    )
    intent = expanded.payment_intent
    assert intent.object == "payment_intent" and intent.latest_charge.object == "charge"
    assert intent.payment_method.card.last4 == "4242"
    assert expanded.customer.email == "exp@example.com"
    assert expanded.line_items.data[0].price.unit_amount == 2500
    plain = client.v1.payment_intents.retrieve(intent.id, params={"expand": ["latest_charge"]})
    assert plain.latest_charge.payment_intent == intent.id
    with pytest.raises(stripe.InvalidRequestError) as not_expandable:
        client.v1.payment_intents.retrieve(intent.id, params={"expand": ["amount"]})
    assert "cannot be expanded" in not_expandable.value.user_message
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.payment_intents.retrieve("pi_missing")
    assert missing.value.user_message == "No such payment_intent: 'pi_missing'"


def test_json_bodies_are_refused_like_stripe(emulator):
    response = requests.post(f"{emulator.url}/v1/customers", json={"email": "x@example.com"},
                             headers={"Authorization": f"Bearer {API_KEY}"})
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("Invalid request (check that your POST content type is application/x-www-form-urlencoded)")


def test_old_api_versions_still_work(emulator):
    old = sdk_client(emulator.url, stripe_version="2023-08-16")
    session = create_session(old)
    assert session.ui_mode == "hosted"
    assert create_session(sdk_client(emulator.url)).ui_mode == "hosted_page"


def test_deleted_customers_answer_as_stubs(client, control):
    customer = client.v1.customers.create(params={"email": "gone@example.com"})
    deleted = client.v1.customers.delete(customer.id)
    assert deleted.deleted is True and deleted.id == customer.id
    assert client.v1.customers.retrieve(customer.id).deleted is True
    assert client.v1.customers.list(params={"email": "gone@example.com"}).data == []
    assert control.events(type="customer.deleted")[0]["data"]["object"]["id"] == customer.id
    with pytest.raises(stripe.InvalidRequestError) as refused:
        create_session(client, customer=customer.id)
    assert refused.value.user_message == f"No such customer: '{customer.id}'"


def test_payment_intent_metadata_update(client, control):
    session = create_session(client)
    control.pay_session(session.id)
    intent_id = client.v1.checkout.sessions.retrieve(session.id).payment_intent
    updated = client.v1.payment_intents.update(intent_id, params={"metadata": {"booking": "77"}, "description": "Booking 77"})
    assert updated.metadata.to_dict() == {"booking": "77"} and updated.description == "Booking 77"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.payment_intents.update(intent_id, params={"amount": 100})
