#!/usr/bin/env node
// Turns the protocol's AsyncAPI document (3.x, or 2.x) into TypeScript declarations: one type
// per message and per shared schema, the unions of client and server frames, a map from `type`
// to frame for typed event handlers, and the frames of each endpoint.
//
// Source: --input <file>, else the repository's docs/asyncapi.json, which the server generates
// from its code (`python manage.py asyncapi`).
//
//   node scripts/gen-types.mjs            write types/protocol.d.ts
//   node scripts/gen-types.mjs --check    exit 1 if types/protocol.d.ts is not up to date

import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const PACKAGE = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const REPOSITORY = resolve(PACKAGE, "..", "..");
export const SERVER_SCHEMA = resolve(REPOSITORY, "docs", "asyncapi.json");
export const OUTPUT = resolve(PACKAGE, "types", "protocol.d.ts");

export function defaultInput() {
  if (!existsSync(SERVER_SCHEMA)) {
    throw new Error(`${SERVER_SCHEMA} not found: run scripts/gen-types.mjs in the repository, or pass --input <file>`);
  }
  return SERVER_SCHEMA;
}

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

// Names a generated type must not take: it would shadow a global type inside the module.
const GLOBALS = new Set(["Array", "Boolean", "Date", "Error", "Function", "Map", "Number", "Object", "Promise", "Record", "Set", "String", "Symbol"]);

function pascal(text) {
  const name = String(text)
    .replace(/[^A-Za-z0-9]+(.)?/g, (_, c) => (c ? c.toUpperCase() : ""))
    .replace(/^./, (c) => c.toUpperCase());
  return GLOBALS.has(name) ? `${name}Frame` : name;
}

function pointer(doc, ref) {
  if (!ref.startsWith("#/")) throw new Error(`only local $refs are supported: ${ref}`);
  let node = doc;
  for (const part of ref.slice(2).split("/")) {
    node = node?.[part.replace(/~1/g, "/").replace(/~0/g, "~")];
    if (node === undefined) throw new Error(`unresolved $ref ${ref}`);
  }
  return node;
}

function deref(doc, node) {
  const seen = new Set();
  while (node && typeof node === "object" && typeof node.$ref === "string") {
    if (seen.has(node.$ref)) throw new Error(`circular $ref ${node.$ref}`);
    seen.add(node.$ref);
    node = pointer(doc, node.$ref);
  }
  return node;
}

function comment(text, indent) {
  if (!text) return "";
  const lines = String(text).trim().split("\n");
  if (lines.length === 1) return `${indent}/** ${lines[0].replace(/\*\//g, "*\\/")} */\n`;
  return `${indent}/**\n${lines.map((l) => `${indent} * ${l.replace(/\*\//g, "*\\/")}`).join("\n")}\n${indent} */\n`;
}

/** JSON Schema → a TypeScript type expression. `names` maps schema $refs to type names. */
class Emitter {
  constructor(doc, names) {
    this.doc = doc;
    this.names = names;
  }

  type(schema, indent = "") {
    if (schema === true || schema === undefined || schema === null) return "unknown";
    if (schema === false) return "never";
    if (schema.$ref) {
      const name = this.names.get(schema.$ref);
      return name || this.type(deref(this.doc, schema), indent);
    }
    if ("const" in schema) return JSON.stringify(schema.const);
    if (Array.isArray(schema.enum)) return schema.enum.map((v) => JSON.stringify(v)).join(" | ");
    if (schema.oneOf || schema.anyOf) return this.union((schema.oneOf || schema.anyOf).map((s) => this.type(s, indent)));
    if (schema.allOf) return schema.allOf.map((s) => this.wrap(this.type(s, indent))).join(" & ");
    if (Array.isArray(schema.type)) {
      return this.union(schema.type.map((t) => this.type({ ...schema, type: t }, indent)));
    }
    switch (schema.type) {
      case "string":
        return "string";
      case "integer":
      case "number":
        return "number";
      case "boolean":
        return "boolean";
      case "null":
        return "null";
      case "array":
        if (Array.isArray(schema.prefixItems)) return `[${schema.prefixItems.map((s) => this.type(s, indent)).join(", ")}]`;
        return `${this.wrap(this.type(schema.items, indent))}[]`;
      case "object":
        return this.object(schema, indent);
      default:
        if (schema.properties || schema.additionalProperties) return this.object(schema, indent);
        return "unknown";
    }
  }

  object(schema, indent) {
    const required = new Set(schema.required || []);
    const inner = `${indent}  `;
    let body = "";
    for (const [name, property] of Object.entries(schema.properties || {})) {
      const key = IDENTIFIER.test(name) ? name : JSON.stringify(name);
      const description = property?.description ?? deref(this.doc, property)?.description;
      body += comment(property?.$ref ? property.description : description, inner);
      body += `${inner}${key}${required.has(name) ? "" : "?"}: ${this.type(property, inner)};\n`;
    }
    const extra = schema.additionalProperties;
    if (extra && typeof extra === "object") {
      body += `${inner}[key: string]: ${this.type(extra, inner)};\n`;
    }
    return body ? `{\n${body}${indent}}` : extra && typeof extra === "object" ? "{}" : "Record<string, unknown>";
  }

  union(types) {
    return [...new Set(types)].join(" | ");
  }

  wrap(type) {
    return /[|&]/.test(type) && !/^[{[]/.test(type) ? `(${type})` : type;
  }
}

/** The messages of the document: [{key, type, direction: "server"|"client", endpoint, payload}]. */
export function collectMessages(doc) {
  const found = [];
  const endpointOf = (channel, fallback) => {
    const address = channel?.address ?? fallback ?? "";
    return String(address).split("/").filter(Boolean).at(-1) || String(fallback);
  };
  const add = (message, ref, direction, endpoint) => {
    const resolved = deref(doc, message);
    const payload = resolved.payload;
    const body = deref(doc, payload) || {};
    const type = body.properties?.type?.const ?? body.properties?.type?.enum?.[0] ?? resolved.name;
    if (typeof type !== "string") throw new Error(`message ${ref} has no type (payload.properties.type.const)`);
    const key = ref?.startsWith("#/components/messages/") ? ref.split("/").at(-1) : pascal(resolved.name || type) + (direction === "client" ? "Frame" : "");
    found.push({ key, type, direction, endpoint, payload, description: resolved.summary || resolved.description });
  };
  if (String(doc.asyncapi).startsWith("3.")) {
    for (const operation of Object.values(doc.operations || {})) {
      const direction = operation.action === "send" ? "server" : "client";
      const channel = deref(doc, operation.channel);
      const channelKey = operation.channel?.$ref?.split("/").at(-1);
      const endpoint = endpointOf(channel, channelKey);
      const refs = operation.messages?.length ? operation.messages : Object.values(channel?.messages || {});
      for (const ref of refs) {
        // A channel message usually points on to a component message: name the type after that.
        let target = ref;
        let componentRef = null;
        while (target?.$ref) {
          if (target.$ref.startsWith("#/components/messages/")) componentRef = target.$ref;
          target = pointer(doc, target.$ref);
        }
        add(target, componentRef, direction, endpoint);
      }
    }
  } else if (String(doc.asyncapi).startsWith("2.")) {
    // 2.x speaks from the client's side: `subscribe` = what the server sends.
    for (const [address, channel] of Object.entries(doc.channels || {})) {
      for (const [verb, direction] of [["subscribe", "server"], ["publish", "client"]]) {
        const message = channel[verb]?.message;
        if (!message) continue;
        const list = message.oneOf || [message];
        for (const item of list) add(item, item.$ref, direction, endpointOf(null, address));
      }
    }
  } else {
    throw new Error("not an AsyncAPI 2.x or 3.x document (no `asyncapi` version)");
  }
  return found;
}

export function generate(doc, sourceLabel) {
  const messages = collectMessages(doc);
  const schemas = doc.components?.schemas || {};
  const names = new Map(Object.keys(schemas).map((name) => [`#/components/schemas/${name}`, pascal(name)]));

  // A payload schema used by one message only is emitted under the message's name.
  const uses = new Map();
  const count = (node) => {
    if (!node || typeof node !== "object") return;
    if (typeof node.$ref === "string") uses.set(node.$ref, (uses.get(node.$ref) || 0) + 1);
    for (const value of Object.values(node)) count(value);
  };
  count(schemas);
  const byKey = new Map();
  for (const message of messages) {
    if (!byKey.has(message.key)) byKey.set(message.key, message);
  }
  for (const message of byKey.values()) count({ x: message.payload });
  const renamed = new Map();
  for (const message of byKey.values()) {
    const ref = message.payload?.$ref;
    if (ref && names.has(ref) && uses.get(ref) === 1) {
      renamed.set(ref, message.key);
      names.set(ref, pascal(message.key));
    }
  }

  const emitter = new Emitter(doc, names);
  let out = `// Generated by scripts/gen-types.mjs from ${sourceLabel}: do not edit, regenerate.\n`;
  out += "// The rpgrealtime wire protocol (docs/protocol.md) as TypeScript types.\n\n";
  out += `export type ProtocolVersion = ${JSON.stringify(String(doc.info?.version ?? ""))};\n\n`;

  for (const [name, schema] of Object.entries(schemas)) {
    const ref = `#/components/schemas/${name}`;
    const typeName = names.get(ref);
    const message = renamed.has(ref) ? byKey.get(renamed.get(ref)) : null;
    out += comment(message?.description || schema.description || (message && `\`${message.type}\``), "");
    const type = emitter.type({ ...schema, description: undefined }, "");
    out += type.startsWith("{\n") ? `export interface ${typeName} ${type}\n\n` : `export type ${typeName} = ${type};\n\n`;
  }
  for (const message of byKey.values()) {
    const ref = message.payload?.$ref;
    if (ref && names.get(ref) === pascal(message.key)) continue;
    out += comment(message.description || `\`${message.type}\``, "");
    const type = emitter.type(message.payload, "");
    out += type.startsWith("{\n") ? `export interface ${pascal(message.key)} ${type}\n\n` : `export type ${pascal(message.key)} = ${type};\n\n`;
  }

  const unionOf = (list) => [...new Set(list.map((m) => pascal(m.key)))].join(" | ") || "never";
  const server = messages.filter((m) => m.direction === "server");
  const client = messages.filter((m) => m.direction === "client");
  out += "/** Every frame the server sends. */\n";
  out += `export type ServerFrame = ${unionOf(server)};\n\n`;
  out += "/** Every frame a client may send. */\n";
  out += `export type ClientFrame = ${unionOf(client)};\n\n`;
  for (const [label, list] of [["Server", server], ["Client", client]]) {
    out += `/** ${label === "Server" ? "Server" : "Client"} frames by \`type\`. */\nexport interface ${label}FrameMap {\n`;
    const types = [...new Set(list.map((m) => m.type))].sort();
    for (const type of types) out += `  ${type}: ${unionOf(list.filter((m) => m.type === type))};\n`;
    out += "}\n\n";
  }
  const endpoints = [...new Set(messages.map((m) => m.endpoint))];
  out += `export type EndpointName = ${endpoints.map((e) => JSON.stringify(e)).join(" | ")};\n\n`;
  out += "/** What flows on each endpoint, in each direction. */\nexport interface EndpointFrames {\n";
  for (const endpoint of endpoints) {
    const mine = messages.filter((m) => m.endpoint === endpoint);
    out += `  ${endpoint}: {\n    server: ${unionOf(mine.filter((m) => m.direction === "server"))};\n`;
    out += `    client: ${unionOf(mine.filter((m) => m.direction === "client"))};\n  };\n`;
  }
  out += "}\n";
  return out;
}

function main(argv) {
  const args = argv.slice(2);
  const option = (name) => {
    const at = args.indexOf(name);
    return at >= 0 ? args[at + 1] : undefined;
  };
  const input = resolve(option("--input") || defaultInput());
  const output = resolve(option("--output") || OUTPUT);
  const doc = JSON.parse(readFileSync(input, "utf8"));
  const text = generate(doc, relative(REPOSITORY, input).split("\\").join("/"));
  if (args.includes("--check")) {
    const current = existsSync(output) ? readFileSync(output, "utf8") : "";
    if (current !== text) {
      console.error(`${relative(process.cwd(), output)} is out of date: run node scripts/gen-types.mjs`);
      process.exit(1);
    }
    return;
  }
  writeFileSync(output, text);
  console.log(`wrote ${relative(process.cwd(), output)} from ${relative(process.cwd(), input)}`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main(process.argv);
