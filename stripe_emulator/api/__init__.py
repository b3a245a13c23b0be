"""Stripe's REST API: one module per resource, all registered in ``routing.ROUTES``."""
