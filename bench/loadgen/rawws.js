// A minimal WebSocket client over plain TCP for the load generator's receiving side.
//
// Why not the `ws` package for subscribers: at 100,000 frames a second its per-frame stream
// machinery costs about as much CPU as the servers being measured, on the same two cores. This
// client parses frames straight out of the socket's chunks, hands each text payload to a callback
// as a Buffer slice, answers pings, and masks what it sends (RFC 6455 requires clients to).
// It speaks plain WebSocket (rpgrealtime) and Engine.IO v4 over WebSocket (the socket.io peer).
"use strict";

const net = require("net");
const crypto = require("crypto");

const OP_TEXT = 0x1;
const OP_CLOSE = 0x8;
const OP_PING = 0x9;
const OP_PONG = 0xa;

function encodeFrame(opcode, payload) {
  const length = payload.length;
  const mask = crypto.randomBytes(4);
  let header;
  if (length < 126) {
    header = Buffer.from([0x80 | opcode, 0x80 | length]);
  } else if (length < 65536) {
    header = Buffer.alloc(4);
    header[0] = 0x80 | opcode;
    header[1] = 0x80 | 126;
    header.writeUInt16BE(length, 2);
  } else {
    header = Buffer.alloc(10);
    header[0] = 0x80 | opcode;
    header[1] = 0x80 | 127;
    header.writeBigUInt64BE(BigInt(length), 2);
  }
  const masked = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) masked[i] = payload[i] ^ mask[i & 3];
  return Buffer.concat([header, mask, masked]);
}

class RawWebSocket {
  // url: ws://host:port/path?query ; onText(Buffer) gets every text payload after the handshake.
  constructor(url, onText, { onClose = () => {}, protocols = [] } = {}) {
    const parsed = new URL(url);
    this.onText = onText;
    this.onClose = onClose;
    this.closed = false;
    this._pending = null; // unparsed bytes carried to the next chunk
    this._handshaken = false;
    this.opened = new Promise((resolve, reject) => {
      this._resolveOpen = resolve;
      this._rejectOpen = reject;
    });
    const socket = net.connect({ host: parsed.hostname, port: Number(parsed.port) });
    socket.setNoDelay(true);
    this.socket = socket;
    const key = crypto.randomBytes(16).toString("base64");
    socket.on("connect", () => {
      const lines = [
        `GET ${parsed.pathname}${parsed.search} HTTP/1.1`,
        `Host: ${parsed.host}`,
        "Upgrade: websocket",
        "Connection: Upgrade",
        `Sec-WebSocket-Key: ${key}`,
        "Sec-WebSocket-Version: 13",
      ];
      if (protocols.length) lines.push(`Sec-WebSocket-Protocol: ${protocols.join(", ")}`);
      socket.write(lines.join("\r\n") + "\r\n\r\n");
    });
    socket.on("data", (chunk) => this._data(chunk));
    socket.on("error", (error) => this._fail(error));
    socket.on("close", () => this._fail(new Error("socket closed")));
  }

  _fail(error) {
    if (!this._handshaken) this._rejectOpen(error);
    if (!this.closed) {
      this.closed = true;
      this.onClose(error);
    }
  }

  _data(chunk) {
    let buf = this._pending ? Buffer.concat([this._pending, chunk]) : chunk;
    this._pending = null;
    if (!this._handshaken) {
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) {
        this._pending = buf;
        return;
      }
      const head = buf.toString("latin1", 0, end);
      if (!head.startsWith("HTTP/1.1 101")) {
        this._fail(new Error(head.split("\r\n")[0]));
        this.socket.destroy();
        return;
      }
      this._handshaken = true;
      this._resolveOpen(this);
      buf = buf.subarray(end + 4);
    }
    let offset = 0;
    const size = buf.length;
    while (size - offset >= 2) {
      const b0 = buf[offset];
      let length = buf[offset + 1] & 0x7f;
      let start = offset + 2;
      if (length === 126) {
        if (size - offset < 4) break;
        length = buf.readUInt16BE(offset + 2);
        start = offset + 4;
      } else if (length === 127) {
        if (size - offset < 10) break;
        length = Number(buf.readBigUInt64BE(offset + 2));
        start = offset + 10;
      }
      if (size - start < length) break;
      const opcode = b0 & 0x0f;
      const payload = buf.subarray(start, start + length);
      offset = start + length;
      if (opcode === OP_TEXT) this.onText(payload);
      else if (opcode === OP_PING) this.socket.write(encodeFrame(OP_PONG, payload));
      else if (opcode === OP_CLOSE) {
        this.closed = true;
        this.socket.end();
        this.onClose(new Error(`closed ${payload.length >= 2 ? payload.readUInt16BE(0) : ""}`));
        return;
      }
    }
    if (offset < size) this._pending = buf.subarray(offset);
  }

  send(text) {
    if (!this.closed) this.socket.write(encodeFrame(OP_TEXT, Buffer.from(text)));
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    this.socket.write(encodeFrame(OP_CLOSE, Buffer.from([0x03, 0xe8])));
    this.socket.end();
  }
}

module.exports = { RawWebSocket };
