// The real server the Python test (tests/clients/test_js_client.py) started for us: its
// addresses, the players it created, and its control route (restart, mint tokens).

const env = process.env;

export const live = env.RPGRT_HTTP
  ? {
      http: env.RPGRT_HTTP,
      ws: env.RPGRT_WS,
      control: env.RPGRT_CONTROL,
      users: JSON.parse(env.RPGRT_USERS),
      heartbeat: Number(env.RPGRT_HEARTBEAT || 30),
    }
  : null;

export const skipUnlessLive = live
  ? false
  : "needs a real server: run it through `scripts/test tests/clients/test_js_client.py`";

async function post(url, body, token) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(url, { method: "POST", headers, body: JSON.stringify(body) });
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new Error(`${url} answered ${response.status}: ${JSON.stringify(data)}`);
  return data;
}

/** `{access, refresh}` for a player, through the token route, as a game would get them. */
export function login(user) {
  return post(`${live.http}/api/v1/auth/token/`, { username: user.username, password: user.password });
}

/** An access token that expires `lifetime` seconds from now (negative: already expired). */
export async function mint(user, lifetime) {
  return (await post(`${live.control}/token`, { user_id: user.id, lifetime })).token;
}

/** SIGTERM the server (its connections close with 1001) and start it again on the same port. */
export function restart() {
  return post(`${live.control}/restart`, {});
}

export async function publish(token, target, message) {
  return post(`${live.http}/api/v1/websocket/publish`, { target, message }, token);
}
