"""Redis: the key layout, the Lua scripts, and the adapter that calls them."""

from rater.store.redis_store import PaygSwitch, RatingInput, RedisStore, SubscriptionSnapshot

__all__ = ["PaygSwitch", "RatingInput", "RedisStore", "SubscriptionSnapshot"]
