import { useState } from "react";
import { api, formErrors, NO_ERRORS } from "./api.js";
import Field, { FormError } from "./Field.jsx";

/** Sign up. The API checks that the confirmation matches (422 on password_confirmation). */
export function SignupForm({ onLoggedIn }) {
  const [errors, setErrors] = useState(NO_ERRORS);

  async function submit(event) {
    event.preventDefault();
    setErrors(NO_ERRORS); // a new answer replaces the last one
    const form = new FormData(event.currentTarget);
    const result = await api("/signup", {
      method: "POST",
      body: {
        username: form.get("username"),
        password: form.get("password"),
        password_confirmation: form.get("password_confirmation"),
      },
    });
    if (result.ok) onLoggedIn(result.data);
    else setErrors(formErrors(result, ["username", "password", "password_confirmation"]));
  }

  return (
    <form id="signup" onSubmit={submit}>
      <h2>Sign up</h2>
      <Field
        form="signup"
        name="username"
        label="Username"
        errors={errors}
        autoComplete="username"
      />
      <Field
        form="signup"
        name="password"
        label="Password"
        errors={errors}
        type="password"
        autoComplete="new-password"
      />
      <Field
        form="signup"
        name="password_confirmation"
        label="Password again"
        errors={errors}
        type="password"
        autoComplete="new-password"
      />
      <FormError id="signup-error" errors={errors} />
      <button id="signup-submit" type="submit">Sign up</button>
    </form>
  );
}

/** Log in; "remember me" asks for a cookie that outlives the browser session. */
export function LoginForm({ onLoggedIn }) {
  const [errors, setErrors] = useState(NO_ERRORS);

  async function submit(event) {
    event.preventDefault();
    setErrors(NO_ERRORS); // a new answer replaces the last one
    const form = new FormData(event.currentTarget);
    const result = await api("/login", {
      method: "POST",
      body: {
        username: form.get("username"),
        password: form.get("password"),
        remember: form.get("remember") === "on",
      },
    });
    if (result.ok) onLoggedIn(result.data);
    else setErrors(formErrors(result, ["username", "password"]));
  }

  return (
    <form id="login" onSubmit={submit}>
      <h2>Log in</h2>
      <Field
        form="login"
        name="username"
        label="Username"
        errors={errors}
        autoComplete="username"
      />
      <Field
        form="login"
        name="password"
        label="Password"
        errors={errors}
        type="password"
        autoComplete="current-password"
      />
      <p className="field">
        <label>
          <input id="login-remember" name="remember" type="checkbox" /> Remember me
        </label>
      </p>
      <FormError id="login-error" errors={errors} />
      <button id="login-submit" type="submit">Log in</button>
    </form>
  );
}
