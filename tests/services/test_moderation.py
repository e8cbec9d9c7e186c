"""Moderation from the admin: the same service as the socket, so recorded and effective live."""

from __future__ import annotations

import uuid

import pytest
from django.test import Client as HttpClient

from accounts.models import User
from realtime.models import ChatMessage, ModerationAction
from realtime.models.chat import PERMANENT
from realtime.protocol import CloseCode
from tests.support.communicator import connect
from tests.support.db import db
from tests.support.users import access_token, make_user

pytestmark = pytest.mark.django_db(transaction=True)


def admin_client(user):
    client = HttpClient()
    client.force_login(user)
    return client


def post(client, path, data):
    return client.post(path, data)


async def staff_http():
    staff = await db(make_user)(username="boss", is_staff=True, is_superuser=True)
    return staff, await db(admin_client)(staff)


async def test_admin_ban_asks_for_duration_then_closes_connections_and_records():
    staff, http = await staff_http()
    target = await db(make_user)()
    watcher = await db(make_user)()
    t, w = await connect("/ws/chat", access_token(target)), await connect("/ws/chat", access_token(watcher))
    form = {"action": "moderation_ban", "_selected_action": [str(target.pk)]}
    page = await db(post)(http, "/admin/accounts/user/", form)
    assert page.status_code == 200 and b"duration" in page.content and b"reason" in page.content
    done = await db(post)(http, "/admin/accounts/user/", {**form, "apply": "yes", "duration": "600", "reason": "bots"})
    assert done.status_code == 302
    error = await t.recv_type("error")
    assert error["code"] == "banned" and "bots" in error["message"]
    assert await t.expect_close() == CloseCode.FORBIDDEN
    event = await w.recv_type("moderation_event")
    assert (event["action"], event["moderator"], event["reason"]) == ("ban", "boss", "bots")
    record = await db(ModerationAction.objects.get)()
    assert (record.action, record.via, record.moderator_id, record.target_id) == ("ban", "admin", staff.pk, target.pk)
    assert (await db(User.objects.get)(pk=target.pk)).banned_until > record.created_at
    await w.close()


async def test_admin_permanent_mute_reaches_the_open_connection():
    _, http = await staff_http()
    target = await db(make_user)()
    t = await connect("/ws/chat", access_token(target))
    form = {"action": "moderation_mute", "_selected_action": [str(target.pk)], "apply": "yes", "duration": ""}
    assert (await db(post)(http, "/admin/accounts/user/", form)).status_code == 302
    await t.recv_type("moderation_notice")
    error = await t.request({"type": "chat_message", "channel": "global", "content": "hello?"})
    assert error["code"] == "muted" and error["details"] == {"until": None}
    assert (await db(User.objects.get)(pk=target.pk)).muted_until == PERMANENT
    await t.close()


async def test_admin_kick_and_refusals_are_reported():
    staff, http = await staff_http()
    target = await db(make_user)()
    other_staff = await db(make_user)(is_staff=True)
    t = await connect("/ws/game", access_token(target))
    form = {"action": "moderation_kick", "_selected_action": [str(target.pk), str(other_staff.pk)], "apply": "yes"}
    response = await db(lambda: http.post("/admin/accounts/user/", form, follow=True))()
    assert (await t.recv_type("error"))["code"] == "kicked"
    assert await t.expect_close() == CloseCode.FORBIDDEN
    text = response.content.decode()
    assert "done for 1" in text and "Staff accounts cannot be moderated" in text
    assert await db(ModerationAction.objects.count)() == 1


async def test_admin_delete_message_action_goes_through_moderation():
    staff, http = await staff_http()
    author = await db(make_user)()
    a = await connect("/ws/chat", access_token(author))
    await a.send({"type": "chat_message", "channel": "global", "content": "delete me"})
    message = await a.recv_type("chat_message")
    row = await db(ChatMessage.objects.get)(message_id=message["message_id"])
    form = {"action": "delete_messages", "_selected_action": [str(row.pk)], "apply": "yes", "reason": "spam"}
    assert (await db(post)(http, "/admin/realtime/chatmessage/", form)).status_code == 302
    event = await a.recv_type("moderation_event")
    assert (event["action"], event["message_id"], event["reason"]) == ("delete_message", message["message_id"], "spam")
    assert (await db(ChatMessage.objects.get)(pk=row.pk)).deleted_at is not None
    assert (await db(ModerationAction.objects.get)()).via == "admin"
    await a.close()


def test_admin_pages_search_filter_and_read_only_log(client):
    staff = make_user(is_staff=True, is_superuser=True)
    client.force_login(staff)
    alice = make_user(username="alice")
    message = ChatMessage.objects.create(
        channel="global", conversation="global", sender=alice, sender_name="alice", content="needle in a haystack"
    )
    ModerationAction.objects.create(action="mute", moderator=staff, moderator_name=staff.username, reason="noise")
    changelist = "/admin/realtime/chatmessage/"
    assert b"needle" in client.get(changelist, {"q": "needle"}).content
    assert b"needle" not in client.get(changelist, {"q": "hay-less"}).content
    assert b"needle" in client.get(changelist, {"q": str(message.message_id)}).content
    assert b"needle" in client.get(changelist, {"channel__exact": "global", "deleted": "no"}).content
    assert b"needle" not in client.get(changelist, {"channel__exact": "guild"}).content
    assert b"needle" not in client.get(changelist, {"deleted": "yes"}).content
    assert b"delete_selected" not in client.get(changelist).content  # hard deletes bypass moderation
    log = "/admin/realtime/moderationaction/"
    assert client.get(log).status_code == 200 and b"noise" in client.get(log).content
    assert client.get(log + "add/").status_code == 403
    assert client.get("/admin/accounts/user/").status_code == 200
    record = ModerationAction.objects.get()
    assert client.post(f"{log}{record.pk}/delete/", {"post": "yes"}).status_code == 403
    assert client.get(f"/admin/accounts/user/{uuid.uuid4()}/change/").status_code in (200, 302)
