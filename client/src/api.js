// Every call to the Flask API goes through api(): the session cookie rides along
// (credentials: "include") and bodies are JSON.

// "/api" goes through the Vite proxy (vite.config.js). A build for another origin sets the
// API's own URL: VITE_API_URL=http://localhost:5555 npm run build
export const API_URL = (import.meta.env.VITE_API_URL || "/api").replace(/\/$/, "");

/**
 * Calls the API. `target` is a path ("/posts?limit=20", joined to API_URL) or a URL object
 * (from nextLink). Returns {ok, status, data, headers, url}: data is the JSON body (null on 204).
 *
 * A 403 {"reauthentication_required": true} (a sensitive change on a session that has not
 * proved who it is lately) asks the user to confirm it is them (see onReauthenticationRequired),
 * then sends the request once more; cancelled, the 403 is the answer. stepUp: false skips that.
 */
export async function api(target, { method = "GET", body, stepUp = true } = {}) {
  const result = await send(target, method, body);
  if (stepUp && result.status === 403 && result.data?.reauthentication_required) {
    if (await confirmItIsYou(result.data.methods)) return send(target, method, body);
  }
  return result;
}

async function send(target, method, body) {
  const url = typeof target === "string" ? API_URL + target : target;
  let response;
  try {
    response = await fetch(url, {
      method,
      credentials: "include", // send the session cookie, and keep the one the API sets
      headers: body === undefined ? {} : { "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    const data = { error: "Could not reach the server." };
    return { ok: false, status: 0, data, headers: new Headers(), url: String(url) };
  }
  const { status, headers } = response;
  const type = headers.get("Content-Type") || "";
  if (status !== 204 && !type.includes("json")) {
    // Not the API: typically index.html, because /api is not proxied (see vite.config.js).
    const data = { error: `Expected JSON from ${response.url}, got HTTP ${status} ${type}.` };
    return { ok: false, status, data, headers, url: response.url };
  }
  const data = status === 204 ? null : await response.json();
  return { ok: response.ok, status, data, headers, url: response.url };
}

// The confirm-it-is-you prompt. One component (StepUp.jsx) registers the function that asks:
// given the API's `methods`, it resolves true once POST /reauthenticate has succeeded, false if
// the user gave up. Calls refused at the same moment share one prompt.
let askUser = null;
let asking = null;

/** Registers the prompt; returns the function that unregisters it. */
export function onReauthenticationRequired(ask) {
  askUser = ask;
  return () => {
    if (askUser === ask) askUser = null;
  };
}

function confirmItIsYou(methods) {
  if (!askUser) return Promise.resolve(false);
  if (!asking) {
    const choices = Array.isArray(methods) && methods.length ? methods : ["password"];
    asking = Promise.resolve(askUser(choices))
      .catch(() => false)
      .finally(() => {
        asking = null;
      });
  }
  return asking;
}

/**
 * The next page's URL from `Link: <posts?limit=20&before=123>; rel="next"`, or null.
 * The reference may be relative: resolve it against the URL that answered, never assume it is
 * absolute, so it keeps working behind the /api proxy.
 */
export function nextLink(result) {
  for (const part of (result.headers.get("Link") || "").split(",")) {
    const match = part.match(/<([^>]*)>\s*;\s*rel="?next"?/);
    if (match) return new URL(match[1], result.url);
  }
  return null;
}

/** One sentence for a failed call: the wait on 429, else the API's own `error`. */
export function errorText(result) {
  if (result.status === 429) {
    const seconds = Number(result.headers.get("Retry-After"));
    if (!seconds) return "Too many attempts. Try again later.";
    // Under two minutes in seconds, as sent; beyond, in whole minutes (901 s: "16 minutes").
    return seconds < 120
      ? `Too many attempts. Try again in ${seconds} seconds.`
      : `Too many attempts. Try again in ${Math.ceil(seconds / 60)} minutes.`;
  }
  return result.data?.error || `Something went wrong (HTTP ${result.status}).`;
}

/**
 * Splits a failed call into {message, fields} for a form: a 422's messages go next to the
 * form's own fields; the top-level sentence is shown when some problem has no field to sit by.
 */
export function formErrors(result, fieldNames) {
  const fields = {};
  let unplaced = false;
  for (const [name, messages] of Object.entries(result.data?.errors || {})) {
    if (fieldNames.includes(name)) fields[name] = messages;
    else unplaced = true;
  }
  const none = Object.keys(fields).length === 0;
  return { message: none || unplaced ? errorText(result) : null, fields };
}

export const NO_ERRORS = { message: null, fields: {} };
