"""The roster's shape, for the OpenAPI document (/api/schema/); `services.roster_for` builds it."""

from __future__ import annotations

from rest_framework import serializers

from accounts.serializers import InvitationSerializer


class RosterMemberSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    username = serializers.CharField()
    status = serializers.ChoiceField(choices=["online", "away", "busy", "offline"])


class RosterGroupSerializer(serializers.Serializer):
    """Your guild or party, with each member's presence."""

    id = serializers.UUIDField()
    name = serializers.CharField()
    open = serializers.BooleanField()
    leader = serializers.UUIDField(allow_null=True)
    members = RosterMemberSerializer(many=True)


class ListedGroupSerializer(serializers.Serializer):
    """An open guild or party you could join."""

    id = serializers.UUIDField()
    name = serializers.CharField()
    members = serializers.IntegerField(help_text="How many members it has.")


class RosterSerializer(serializers.Serializer):
    guild = RosterGroupSerializer(allow_null=True)
    party = RosterGroupSerializer(allow_null=True)
    guilds = ListedGroupSerializer(many=True)
    parties = ListedGroupSerializer(many=True)
    invitations = InvitationSerializer(many=True)
