"""Django's Redis cache with django-prometheus's cache metrics (django_cache_get_total, hits, misses, failed
gets), without the django-redis package that django-prometheus's own Redis backends import."""

from django.core.cache.backends.redis import RedisCache
from django_prometheus.cache.metrics import (
    django_cache_get_fail_total,
    django_cache_get_total,
    django_cache_hits_total,
    django_cache_misses_total,
)

BACKEND_LABEL = "redis"


class CountedRedisCache(RedisCache):
    def get(self, key, default=None, version=None):
        django_cache_get_total.labels(backend=BACKEND_LABEL).inc()
        try:
            value = super().get(key, default=None, version=version)
        except Exception:
            django_cache_get_fail_total.labels(backend=BACKEND_LABEL).inc()
            raise
        if value is None:
            django_cache_misses_total.labels(backend=BACKEND_LABEL).inc()
            return default
        django_cache_hits_total.labels(backend=BACKEND_LABEL).inc()
        return value
