"""Event vocabularies shared by configuration, the simulator and the marts.

Kept free of heavy imports: the simulator's worker processes import it.
"""

from __future__ import annotations

ECOMMERCE_FUNNEL = ("page_view", "product_view", "add_to_cart", "checkout_start", "purchase")
SAAS_FUNNEL = ("login", "create_project", "export", "invite", "upgrade")
DEFAULT_FUNNELS: dict[str, tuple[str, ...]] = {"ecommerce": ECOMMERCE_FUNNEL, "saas": SAAS_FUNNEL}
