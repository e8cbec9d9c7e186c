#!/usr/bin/env node
// Copies src/ to the play page's static files (play/static/rpgrealtime-client/), which serve it at
// /static/rpgrealtime-client/. The copy exists only because the project's static settings do not
// list clients/js/src (a STATICFILES_DIRS entry with the prefix "rpgrealtime-client" would serve
// this folder at the same address, and make the copy unnecessary). A test fails when they differ.
//
//   node scripts/sync-play.mjs            copy
//   node scripts/sync-play.mjs --check    exit 1 if the copy differs

import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const PACKAGE = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const SOURCE = join(PACKAGE, "src");
const TARGET = resolve(PACKAGE, "..", "..", "play", "static", "rpgrealtime-client");
const HEADER = "// A copy of clients/js/src (scripts/sync-play.mjs): edit the original, then sync.\n";

const files = readdirSync(SOURCE).filter((name) => name.endsWith(".js")).sort();
const expected = new Map(files.map((name) => [name, HEADER + readFileSync(join(SOURCE, name), "utf8")]));

if (process.argv.includes("--check")) {
  const present = existsSync(TARGET) ? readdirSync(TARGET).sort() : [];
  const stale = [...expected].filter(([name, text]) => !present.includes(name) || readFileSync(join(TARGET, name), "utf8") !== text);
  const extra = present.filter((name) => !expected.has(name));
  if (stale.length || extra.length) {
    console.error(`play/static/rpgrealtime-client is out of date (${[...stale.map(([n]) => n), ...extra].join(", ")}): run node clients/js/scripts/sync-play.mjs`);
    process.exit(1);
  }
} else {
  rmSync(TARGET, { recursive: true, force: true });
  mkdirSync(TARGET, { recursive: true });
  for (const [name, text] of expected) writeFileSync(join(TARGET, name), text);
  console.log(`copied ${files.length} files to ${TARGET}`);
}
