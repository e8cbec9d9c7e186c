"""Zones of the world map (docs/protocol.md §7): a name, rectangular bounds and a spawn point."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models

# Zone names become part of group names (`world.cell.<zone>.<cx>.<cy>`), which the channel
# layer limits to 100 ASCII letters, digits, '-', '_' and '.': 50 lowercase characters fit.
ZONE_NAME_PATTERN = r"^[a-z0-9_-]+$"
ZONE_NAME_MAX_LENGTH = 50


class Zone(models.Model):
    """A rectangle of the world, x in [min_x, max_x] and y in [min_y, max_y] (edges included)."""

    name = models.CharField(
        max_length=ZONE_NAME_MAX_LENGTH,
        unique=True,
        validators=[RegexValidator(ZONE_NAME_PATTERN, "Use lowercase letters, digits, '_' and '-'.")],
        help_text="What clients send in zone_change, e.g. starter_town.",
    )
    title = models.CharField(max_length=100, blank=True, help_text="Display name (not sent to clients).")
    min_x = models.FloatField(default=0)
    min_y = models.FloatField(default=0)
    max_x = models.FloatField()
    max_y = models.FloatField()
    spawn_x = models.FloatField(help_text="Where players enter the zone.")
    spawn_y = models.FloatField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(min_x__lt=models.F("max_x")) & models.Q(min_y__lt=models.F("max_y")),
                name="zone_bounds_not_empty",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors = {}
        if self.max_x is not None and self.min_x is not None and self.min_x >= self.max_x:
            errors["max_x"] = "max_x must be larger than min_x."
        if self.max_y is not None and self.min_y is not None and self.min_y >= self.max_y:
            errors["max_y"] = "max_y must be larger than min_y."
        if not errors and None not in (self.spawn_x, self.spawn_y, self.max_x, self.max_y):
            if not self.min_x <= self.spawn_x <= self.max_x:
                errors["spawn_x"] = "The spawn point must be inside the bounds."
            if not self.min_y <= self.spawn_y <= self.max_y:
                errors["spawn_y"] = "The spawn point must be inside the bounds."
        if errors:
            raise ValidationError(errors)
