import { useCallback, useEffect, useState } from "react";
import { api, errorText } from "./api.js";
import { LoginForm, SignupForm } from "./AuthForms.jsx";
import Posts from "./Posts.jsx";
import Security from "./Security.jsx";
import StepUp from "./StepUp.jsx";

export default function App() {
  const [user, setUser] = useState(undefined); // undefined: still asking; null: logged out
  const [error, setError] = useState(null);
  const [screen, setScreen] = useState("posts"); // "posts" or "security"

  // On load, ask the API who the session cookie belongs to: 200 is the user, 401 is nobody.
  useEffect(() => {
    api("/check_session").then((result) => {
      if (!result.ok && result.status !== 401) setError(errorText(result));
      setUser(result.ok ? result.data : null);
    });
  }, []);

  const sessionEnded = useCallback(() => {
    setUser(null);
    setScreen("posts");
  }, []);

  async function logOut() {
    await api("/logout", { method: "DELETE" }); // 204, or 401 if the session had already ended
    sessionEnded();
  }

  if (user === undefined) return <p id="loading">Loading…</p>;

  if (user === null) {
    return (
      <main>
        <h1>Flask IAM</h1>
        {error && (
          <p className="error" id="app-error" role="alert">
            {error}
          </p>
        )}
        <div className="auth">
          <SignupForm onLoggedIn={setUser} />
          <LoginForm onLoggedIn={setUser} />
        </div>
      </main>
    );
  }

  return (
    <main>
      <h1>Flask IAM</h1>
      <header>
        <p id="whoami">
          Logged in as <b>{user.username}</b>
        </p>
        <nav aria-label="Account">
          <button
            id="show-posts"
            type="button"
            aria-current={screen === "posts" ? "page" : undefined}
            onClick={() => setScreen("posts")}
          >
            Posts
          </button>{" "}
          <button
            id="show-security"
            type="button"
            aria-current={screen === "security" ? "page" : undefined}
            onClick={() => setScreen("security")}
          >
            Security
          </button>{" "}
          <button id="logout" type="button" onClick={logOut}>
            Log out
          </button>
        </nav>
      </header>
      {screen === "security" ? (
        <Security onSessionEnded={sessionEnded} />
      ) : (
        <Posts user={user} onSessionEnded={sessionEnded} />
      )}
      <StepUp />
    </main>
  );
}
