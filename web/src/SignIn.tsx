import { type FormEvent, useState } from "react";
import { ApiError, api } from "./api";

export function SignIn({ onSignedIn }: { onSignedIn: (token: string, address: string) => void }) {
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const data = new FormData(event.currentTarget);
    const username = String(data.get("email") ?? "").trim();
    const password = String(data.get("password") ?? "");
    setBusy(true);
    setError(null);
    try {
      const answer = await api<{ access_token: string }>("/auth/token", {
        method: "POST",
        form: new URLSearchParams({ username, password }),
      });
      onSignedIn(answer.access_token, username);
    } catch (caught) {
      setError(caught instanceof ApiError ? caught.message : "signing in failed; try again");
      setBusy(false);
    }
  }

  return (
    <main className="signin">
      <form onSubmit={submit} aria-labelledby="signin-title">
        <h1 id="signin-title">postroom</h1>
        <label htmlFor="signin-email">Email</label>
        <input
          id="signin-email"
          name="email"
          type="text"
          inputMode="email"
          autoComplete="username"
          autoFocus
        />
        <label htmlFor="signin-password">Password</label>
        <input
          id="signin-password"
          name="password"
          type="password"
          autoComplete="current-password"
        />
        {error && (
          <p role="alert" className="error">
            {error}
          </p>
        )}
        <button type="submit" disabled={busy}>
          Sign in
        </button>
      </form>
    </main>
  );
}
