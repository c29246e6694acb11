"""Celery workers: the app, its configuration and the tasks."""
