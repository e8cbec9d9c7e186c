// Compiled (not run) by the type test: the declarations must let a game client be written
// naturally, and must refuse what the protocol does not allow.

import { RealtimeClient, ServerError } from "@rpgrealtime/client";
import type { ChatMessage, ClientFrame, CombatState, EndpointFrames, ResyncEvent } from "@rpgrealtime/client";

const client = new RealtimeClient("wss://example.invalid/ws/chat", {
  getToken: async ({ reason }) => (reason === "refresh" ? "new" : "cached"),
});

client.on("chat_message", (frame: ChatMessage) => {
  const who: string = frame.user;
  const to: string | null = frame.to;
  void who;
  void to;
});
client.on("combat_state", (state: CombatState) => {
  const actor: string | null = state.turn.actor;
  void actor;
});
client.on("resync", (event: ResyncEvent) => {
  const stream: string = event.stream;
  void stream;
});
client.on("close", (event) => {
  if (event.action === "stop") console.log(event.error?.code);
});

async function chat(): Promise<void> {
  await client.connect();
  const reply = await client.request({ type: "history_request", channel: "global", limit: 20 });
  if (reply.type === "history") console.log(reply.messages.length, reply.has_more);
  try {
    await client.request({ type: "chat_message", channel: "global", content: "hi" });
  } catch (error) {
    if (error instanceof ServerError) console.log(error.code);
  }
  client.send({ type: "typing", channel: "party", is_typing: true });
  // @ts-expect-error: not a channel
  client.send({ type: "typing", channel: "shout", is_typing: true });
  // @ts-expect-error: not a client frame
  client.send({ type: "combat_state" });
}
void chat;

const worldOut: EndpointFrames["world"]["client"] = { type: "player_movement", zone: "starter_town", x: 1, y: 2 };
const any: ClientFrame = worldOut;
void any;
