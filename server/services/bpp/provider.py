"""Who we are on the Beckn network: the provider every action answers as."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Provider:
    """Who we are on the network."""

    bpp_id: str
    bpp_uri: str
    name: str = "derflex"
    currency: str = "USD"
    support_email: str = "support@derflex.local"
    support_phone: str = "+1-000-000-0000"
    track_url: str = ""  # base; an order's tracking URL is f"{track_url}/{order_id}"
    signature_max_lifetime_s: int = 300  # a BAP's signature valid longer is refused
    key_id: str = "k1"  # our unique_key_id
    key_path: str = ""  # our signing key's file: v2 Acks carry a counter-signature made with it
    networks: tuple[str, ...] = ()  # v2 networkIds served (empty: any, or none given)
    v2_page_size: int = 1000  # meters per performance page in a v2 on_status (BecknPageInfo)

    @property
    def v2_uri(self) -> str:
        """Our Beckn v2.0.0 base URL (v1.1.0 stays at bpp_uri)."""
        return f"{self.bpp_uri.rstrip('/')}/v2"

    @classmethod
    def of(cls, settings: Any) -> "Provider":
        """Ours, from the server's settings (server.config.Settings)."""
        return cls(bpp_id=settings.beckn_subscriber_id, bpp_uri=settings.beckn_uri,
                   track_url=f"{settings.beckn_uri}/track",
                   signature_max_lifetime_s=settings.beckn_signature_max_lifetime_seconds,
                   key_id=settings.beckn_unique_key_id, key_path=str(settings.beckn_key_path),
                   networks=tuple(settings.beckn_v2_networks),
                   v2_page_size=settings.beckn_v2_page_size)
