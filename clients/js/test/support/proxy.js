// A TCP proxy the tests control, between a client and a server: it can cut every connection
// (a reset, as when an instance dies) or stop forwarding without closing anything (a silent
// drop: a train tunnel, a NAT that forgot the connection), which no server can fake.

import net from "node:net";

export class Proxy {
  constructor(targetPort, targetHost = "127.0.0.1") {
    this.targetPort = targetPort;
    this.targetHost = targetHost;
    this.pairs = new Set();
    this.accepted = 0;
    this.refusing = false; // cut new connections at once: the server is "unreachable"
  }

  async start() {
    this.server = net.createServer((client) => this._pair(client));
    await new Promise((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.port = this.server.address().port;
    return this;
  }

  url(path) {
    return `ws://127.0.0.1:${this.port}${path}`;
  }

  _pair(client) {
    if (this.refusing) {
      client.resetAndDestroy();
      return;
    }
    this.accepted += 1;
    const upstream = net.connect(this.targetPort, this.targetHost);
    const pair = { client, upstream };
    this.pairs.add(pair);
    client.pipe(upstream);
    upstream.pipe(client);
    const end = () => {
      this.pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
  }

  /** Stop forwarding on every open connection, closing nothing; new connections still work. */
  stall() {
    for (const { client, upstream } of this.pairs) {
      client.unpipe(upstream);
      upstream.unpipe(client);
      client.pause();
      upstream.pause();
    }
  }

  /** Cut every open connection with a reset on both sides. */
  reset() {
    for (const { client, upstream } of [...this.pairs]) {
      client.resetAndDestroy();
      upstream.resetAndDestroy();
    }
    this.pairs.clear();
  }

  async stop() {
    this.reset();
    await new Promise((resolve) => this.server.close(resolve));
  }
}
