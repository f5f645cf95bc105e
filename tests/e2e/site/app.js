"use strict";
const API = new URLSearchParams(location.search).get("api");

async function api(path, {method = "GET", body} = {}) {
  const response = await fetch(API + path, {
    method,
    credentials: "include",
    headers: body === undefined ? {} : {"Content-Type": "application/json"},
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = response.status === 204 ? null : await response.json();
  return {status: response.status, data};
}

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, attributes);
  node.append(...children);
  return node;
}

function showError(root, result) {
  root.append(el("p", {className: "error"}, result.data ? result.data.error : "Request failed"));
}

async function render() {
  const root = document.getElementById("app");
  const me = await api("/check_session");
  root.replaceChildren();
  if (me.status !== 200) {
    const username = el("input", {id: "username", placeholder: "username"});
    const password = el("input", {id: "password", type: "password", placeholder: "password"});
    const submit = (path) => async () => {
      const result = await api(path, {method: "POST", body: {username: username.value, password: password.value}});
      if (result.status >= 400) return showError(root, result);
      render();
    };
    root.append(
      el("h1", {}, "Welcome"), username, password,
      el("button", {id: "signup", onclick: submit("/signup")}, "Sign up"),
      el("button", {id: "login", onclick: submit("/login")}, "Log in"),
    );
    return;
  }
  const posts = await api(`/posts?user_id=${me.data.id}`);
  const content = el("input", {id: "content", placeholder: "What's new?"});
  const list = el("ul", {id: "posts"});
  for (const post of posts.data) {
    list.append(el("li", {className: "post"},
      el("span", {className: "content"}, post.content), " ",
      el("button", {className: "delete", onclick: async () => {
        await api(`/posts/${post.id}`, {method: "DELETE"});
        render();
      }}, "Delete")));
  }
  root.append(
    el("p", {id: "whoami"}, "Logged in as ", el("b", {}, me.data.username)),
    content,
    el("button", {id: "post", onclick: async () => {
      const result = await api("/posts", {method: "POST", body: {content: content.value}});
      if (result.status >= 400) return showError(root, result);
      render();
    }}, "Post"),
    list,
    el("button", {id: "logout", onclick: async () => {
      await api("/logout", {method: "DELETE"});
      render();
    }}, "Log out"),
  );
}

render();
