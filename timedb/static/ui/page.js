// What the parts of the page share: the URL hash that holds its state, the busy flag, messages
// (problem documents as sentences), and elements built from text (never from HTML).

import { Problem } from "./api.js";

export const $ = (id) => document.getElementById(id);

export function element(tag, text, attributes = {}) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = text;
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  return node;
}

// -- the hash ---------------------------------------------------------------------------------------

export function readHash() {
  return Object.fromEntries(new URLSearchParams(location.hash.slice(1)));
}

export function hashOf(state) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(state)) if (value) params.set(key, value);
  return `#${params}`;
}

/** Change some of the state (a null or "" removes a key); the page follows through hashchange. */
export function setHash(changes) {
  location.hash = hashOf({ ...readHash(), ...changes });
}

export function pick(state, keys) {
  return Object.fromEntries(keys.map((key) => [key, state[key]]));
}

// -- busy state and messages ------------------------------------------------------------------------

let pending = 0;

/** Run work with aria-busy="true" on the body (tests wait for "false"); show its error, if any. */
export async function busy(work) {
  document.body.setAttribute("aria-busy", String(++pending > 0));
  try {
    return await work();
  } catch (error) {
    if (error.name !== "AbortError") showError(error);
    return undefined;
  } finally {
    document.body.setAttribute("aria-busy", String(--pending > 0));
  }
}

function showError(error) {
  const lines = error instanceof Problem ? error.lines() : ["The page failed", String(error)];
  const box = $("message");
  box.replaceChildren(...lines.map((text, i) => element(i ? "p" : "strong", text)));
  box.hidden = false;
}

export function clearMessage() {
  $("message").hidden = true;
}
