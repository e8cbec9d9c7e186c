// Small DOM helpers shared by the panels: building elements, toasts, times.
// Everything a player or the server wrote goes into the page as text (textContent), never as HTML.

export const $ = (selector, root = document) => root.querySelector(selector);

// el("li", {class: "msg", dataset: {id: 1}, onclick: fn}, "text", child) → an element.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const TOAST_MS = { info: 6000, success: 6000, warning: 9000, critical: 15000, error: 9000 };

// A short-lived notice in the corner: announcements, achievements, errors nobody else showed.
export function toast(text, { kind = "info", title = null } = {}) {
  const box = $("#toasts");
  const node = el(
    "div",
    { class: `toast toast-${kind}`, role: kind === "error" || kind === "critical" ? "alert" : "status" },
    title ? el("strong", {}, title) : null,
    el("span", {}, text),
  );
  node.addEventListener("click", () => node.remove());
  box.append(node);
  while (box.children.length > 6) box.firstElementChild.remove();
  setTimeout(() => node.remove(), TOAST_MS[kind] ?? 6000);
  return node;
}

export function clock(iso) {
  const date = iso ? new Date(iso) : new Date();
  return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

// An error frame as one readable line: "muted: You are muted. (until 10:10:08)".
export function describeError(error) {
  const code = error.code || "error";
  let text = `${code}: ${error.message}`;
  const details = error.details;
  if (details && !Array.isArray(details) && details.until) text += ` (until ${clock(details.until)})`;
  if (Array.isArray(details) && details.length) {
    text += ` (${details.map((d) => `${d.field}: ${d.problem}`).join("; ")})`;
  }
  return text;
}
