"use strict";
const params = new URLSearchParams(location.search);
const API = params.get("api");
const POST = params.get("post");
window.results = {};

async function attempt(name, url, options) {
  try {
    const response = await fetch(API + url, {credentials: "include", ...options});
    // An opaque (no-cors) response hides even its status from the page.
    window.results[name] = response.type === "opaque" ? "opaque" : `read ${response.status} ${await response.text()}`;
  } catch (error) {
    window.results[name] = "blocked";
  }
}

function formPost(url, fields, enctype) {
  return new Promise((resolve) => {
    const form = document.createElement("form");
    Object.assign(form, {method: "POST", action: API + url, target: "sink", enctype});
    for (const [name, value] of Object.entries(fields)) {
      form.append(Object.assign(document.createElement("input"), {name, value, type: "hidden"}));
    }
    document.body.append(form);
    // The API forbids framing, so the frame may never report "load"; don't wait forever.
    document.querySelector("iframe").addEventListener("load", () => resolve(), {once: true});
    setTimeout(resolve, 3000);
    form.submit();
  });
}

(async () => {
  const json = {"Content-Type": "application/json"};
  await attempt("read_session", "/check_session", {});
  await attempt("read_posts", "/posts", {});
  await attempt("create_json", "/posts", {method: "POST", headers: json, body: JSON.stringify({content: "forged"})});
  await attempt("create_simple", "/posts", {method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"}, body: JSON.stringify({content: "forged"})});
  await attempt("edit", `/posts/${POST}`, {method: "PATCH", headers: json, body: JSON.stringify({content: "forged"})});
  await attempt("delete", `/posts/${POST}`, {method: "DELETE"});
  await attempt("logout", "/logout", {method: "DELETE"});
  await attempt("logout_simple", "/logout", {method: "POST", mode: "no-cors"});
  await formPost("/posts", {'{"content":"forged","x":"': '"}'}, "text/plain");
  await formPost("/login", {username: "mallory", password: "mallory-password"}, "application/x-www-form-urlencoded");
  window.results.forms = "submitted";
  document.body.dataset.done = "1";
})();
