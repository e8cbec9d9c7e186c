"""Chat services without sockets: the cost of storing, keyset history queries, pruning."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from realtime.features.chat import ChatSender, chat_history_page, chat_message_store
from realtime.models import ChatMessage, ModerationAction
from tests.support.users import make_user

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


def sender_of(user, **fields):
    return ChatSender(user_id=str(user.pk), username=user.username, guild_id=None, party_id=None, **fields)


def test_storing_a_message_is_one_insert(django_assert_num_queries):
    alice = make_user()
    with django_assert_num_queries(1):
        message = chat_message_store(sender=sender_of(alice), channel="global", content="hi", to=None, scope_id=None)
    assert message.conversation == "global" and message.sender_name == alice.username


def test_storing_a_private_message_is_a_lookup_and_an_insert(django_assert_num_queries):
    alice, bob = make_user(), make_user()
    with django_assert_num_queries(2):
        message = chat_message_store(
            sender=sender_of(alice), channel="private", content="hi", to=str(bob.pk), scope_id=None
        )
    # Either direction is one conversation.
    assert message.conversation == "private:" + ":".join(sorted([str(alice.pk), str(bob.pk)]))


def test_history_is_a_keyset_query_on_the_history_index():
    alice = make_user()
    base = timezone.now()
    rows = ChatMessage.objects.bulk_create(
        ChatMessage(
            channel="global",
            conversation="global",
            sender=alice,
            sender_name=alice.username,
            content=str(n),
            created_at=base + timedelta(seconds=n),
        )
        for n in range(30)
    )
    cursor = ChatMessage.objects.get(content="20").message_id
    with CaptureQueriesContext(connection) as queries:
        page = chat_history_page(reader=sender_of(alice), channel="global", limit=5, before=str(cursor))
    assert [m["content"] for m in page.messages] == ["15", "16", "17", "18", "19"] and page.has_more
    assert len(queries) == 2  # the cursor's position, then the page
    page_sql = queries[-1]["sql"]
    assert "OFFSET" not in page_sql.upper() and '"id" <' in page_sql
    if connection.vendor == "sqlite":
        with connection.cursor() as db_cursor:
            db_cursor.execute("EXPLAIN QUERY PLAN " + page_sql)
            plan = " ".join(str(row) for row in db_cursor.fetchall())
        assert "chat_history" in plan, plan
    assert len(rows) == 30


def test_prune_chat_history_deletes_old_messages_only():
    alice, mod = make_user(), make_user(is_moderator=True)
    now = timezone.now()
    for age_days in (40, 31, 29, 1):
        ChatMessage.objects.create(
            channel="global",
            conversation="global",
            sender=alice,
            sender_name=alice.username,
            content=f"{age_days} days old",
            created_at=now - timedelta(days=age_days),
        )
    ModerationAction.objects.create(
        action="kick", moderator=mod, moderator_name=mod.username, created_at=now - timedelta(days=90)
    )
    out = StringIO()
    call_command("prune_chat_history", "--days", "30", stdout=out)
    assert out.getvalue().strip() == "Deleted 2 chat messages older than 30 days."
    assert sorted(ChatMessage.objects.values_list("content", flat=True)) == ["1 days old", "29 days old"]
    assert ModerationAction.objects.count() == 1  # the moderation log is kept
    out = StringIO()
    call_command("prune_chat_history", "--days", "30", stdout=out)
    assert out.getvalue().strip() == "Deleted 0 chat messages older than 30 days."


@pytest.mark.parametrize("arguments", [[], ["--days", "-1"], ["--days", "nan"], ["--days", "soon"]])
def test_prune_chat_history_refuses_bad_arguments(arguments):
    with pytest.raises(CommandError) as refused:
        call_command("prune_chat_history", *arguments)
    if arguments[1:] in (["-1"], ["nan"]):
        assert refused.value.returncode == 2  # a usage error, like those argparse reports


def test_prune_chat_history_help_exits_zero():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "rpgrealtime.settings.test"}
    result = subprocess.run(
        [sys.executable, "manage.py", "prune_chat_history", "--help"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "--days" in result.stdout
