"""Pushes every new Reading to the live sessions of the `live` app, in every process."""

from django.db.models.signals import post_save
from django.dispatch import receiver

from bokehserve_django import broadcast

from .models import Reading


@receiver(post_save, sender=Reading, dispatch_uid="demo.reading_saved")
def reading_saved(sender, instance: Reading, created: bool, **kwargs) -> None:
    if created:
        payload = {"id": instance.pk, "t": instance.created_at.timestamp() * 1000, "value": instance.value}
        broadcast.send("reading", payload, app="live")
