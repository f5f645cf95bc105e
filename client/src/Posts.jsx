import { useEffect, useState } from "react";
import { api, errorText, formErrors, nextLink, NO_ERRORS } from "./api.js";
import { FormError } from "./Field.jsx";

// Posts per page; the page's own URL may change it (?limit=5), which the tests use.
const PAGE_SIZE = Number(new URLSearchParams(window.location.search).get("limit")) || 20;

/** Everyone's posts, newest first, a page at a time; `user` may change only their own. */
export default function Posts({ user, onSessionEnded }) {
  const [posts, setPosts] = useState([]);
  const [next, setNext] = useState(null); // the URL of the next page, from the Link header
  const [error, setError] = useState(null);

  useEffect(() => {
    let ignore = false; // a response that arrives after this component is gone is dropped
    api(`/posts?limit=${PAGE_SIZE}`).then((result) => {
      if (ignore) return;
      if (result.status === 401) return onSessionEnded();
      if (!result.ok) return setError(errorText(result));
      setPosts(result.data);
      setNext(nextLink(result));
    });
    return () => {
      ignore = true;
    };
  }, [onSessionEnded]);

  async function loadMore() {
    const result = await api(next);
    if (result.status === 401) return onSessionEnded();
    if (!result.ok) return setError(errorText(result));
    setError(null);
    setPosts((shown) => [...shown, ...result.data]);
    setNext(nextLink(result));
  }

  const replace = (post) => setPosts((shown) => shown.map((p) => (p.id === post.id ? post : p)));
  const remove = (id) => setPosts((shown) => shown.filter((p) => p.id !== id));

  return (
    <section>
      <NewPost
        onCreated={(post) => setPosts((shown) => [post, ...shown])}
        onSessionEnded={onSessionEnded}
      />
      <ul id="posts">
        {posts.map((post) => (
          <PostItem
            key={post.id}
            post={post}
            mine={post.user.id === user.id}
            onChanged={replace}
            onDeleted={remove}
            onSessionEnded={onSessionEnded}
          />
        ))}
      </ul>
      {error && (
        <p className="error" id="posts-error" role="alert">
          {error}
        </p>
      )}
      {next && (
        <button id="load-more" type="button" onClick={loadMore}>
          Load more
        </button>
      )}
    </section>
  );
}

function NewPost({ onCreated, onSessionEnded }) {
  const [errors, setErrors] = useState(NO_ERRORS);

  async function submit(event) {
    event.preventDefault();
    setErrors(NO_ERRORS); // a new answer replaces the last one
    const form = event.currentTarget;
    const content = new FormData(form).get("content");
    const result = await api("/posts", { method: "POST", body: { content } });
    if (result.status === 401) return onSessionEnded();
    if (!result.ok) return setErrors(formErrors(result, ["content"]));
    form.reset();
    onCreated(result.data);
  }

  return (
    <form id="new-post" onSubmit={submit}>
      <label htmlFor="new-post-content">What's new?</label>
      <textarea id="new-post-content" name="content" rows={3} />
      {errors.fields.content && (
        <span className="field-error" id="new-post-content-error">
          {errors.fields.content.join(" ")}
        </span>
      )}
      <FormError id="new-post-error" errors={errors} />
      <button id="new-post-submit" type="submit">
        Post
      </button>
    </form>
  );
}

function PostItem({ post, mine, onChanged, onDeleted, onSessionEnded }) {
  const [editing, setEditing] = useState(false);
  const [errors, setErrors] = useState(NO_ERRORS);

  async function save(event) {
    event.preventDefault();
    setErrors(NO_ERRORS); // a new answer replaces the last one
    const content = new FormData(event.currentTarget).get("content");
    const result = await api(`/posts/${post.id}`, { method: "PATCH", body: { content } });
    if (result.status === 401) return onSessionEnded();
    if (!result.ok) return setErrors(formErrors(result, ["content"]));
    setEditing(false);
    onChanged(result.data);
  }

  async function destroy() {
    const result = await api(`/posts/${post.id}`, { method: "DELETE" });
    if (result.status === 401) return onSessionEnded();
    if (!result.ok) return setErrors({ message: errorText(result), fields: {} });
    onDeleted(post.id);
  }

  return (
    <li className="post" data-post-id={post.id}>
      <p className="meta">
        <span className="author">{post.user.username}</span>{" "}
        <time dateTime={post.created_at}>{new Date(post.created_at).toLocaleString()}</time>
        {post.updated_at !== post.created_at && <span className="edited"> (edited)</span>}
      </p>
      {editing ? (
        <form className="edit-form" onSubmit={save}>
          <textarea className="edit-content" name="content" defaultValue={post.content} rows={3} />
          {errors.fields.content && (
            <span className="field-error">{errors.fields.content.join(" ")}</span>
          )}
          <button className="save" type="submit">
            Save
          </button>
          <button className="cancel" type="button" onClick={() => setEditing(false)}>
            Cancel
          </button>
        </form>
      ) : (
        <p className="content">{post.content}</p>
      )}
      {errors.message && (
        <p className="error" role="alert">
          {errors.message}
        </p>
      )}
      {mine && !editing && (
        <p className="actions">
          <button className="edit" type="button" onClick={() => setEditing(true)}>
            Edit
          </button>
          <button className="delete" type="button" onClick={destroy}>
            Delete
          </button>
        </p>
      )}
    </li>
  );
}
