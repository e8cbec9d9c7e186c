// Validates frames against the protocol schema the types are generated from: the server's
// docs/asyncapi.json, generated from its code.

import { readFileSync } from "node:fs";
import Ajv from "ajv";

import { defaultInput } from "../../scripts/gen-types.mjs";

export function loadSchema(path = defaultInput()) {
  return { path, doc: JSON.parse(readFileSync(path, "utf8")) };
}

function resolve(doc, node) {
  while (node?.$ref) node = node.$ref.slice(2).split("/").reduce((at, part) => at?.[part], doc);
  return node;
}

/** `(frame, direction) → null | "what is wrong"`, direction "server" or "client". */
export function frameValidator(doc) {
  const ajv = new Ajv({ strict: false, allErrors: true });
  ajv.addFormat("date-time", true); // the pattern in the schema says exactly what is allowed
  ajv.addFormat("uuid", /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  ajv.addSchema(doc, "protocol");
  const byType = { server: new Map(), client: new Map() };
  for (const operation of Object.values(doc.operations || {})) {
    const direction = operation.action === "send" ? "server" : "client";
    for (const ref of operation.messages || []) {
      const message = resolve(doc, ref);
      const payload = message.payload;
      const body = resolve(doc, payload);
      const type = body.properties.type.const;
      const pointer = payload.$ref ? payload.$ref.slice(1) : null;
      const validate = pointer ? ajv.getSchema(`protocol#${pointer}`) : ajv.compile(payload);
      const list = byType[direction].get(type) || [];
      if (!list.includes(validate)) list.push(validate);
      byType[direction].set(type, list);
    }
  }
  const check = (frame, direction = "server") => {
    const candidates = byType[direction].get(frame?.type);
    if (!candidates) return `no schema for ${direction} frame type ${JSON.stringify(frame?.type)}`;
    const problems = [];
    for (const validate of candidates) {
      if (validate(frame)) return null;
      problems.push(ajv.errorsText(validate.errors));
    }
    return `${frame.type}: ${problems.join("; ")}`;
  };
  check.types = byType;
  return check;
}
