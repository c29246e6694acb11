"""Messages end to end: webhook, queue, a real Celery worker, the answer, per platform;
bursts, limits, crashes."""
