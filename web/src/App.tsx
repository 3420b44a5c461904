// Signed out: the sign-in form. Signed in: the mail view.
import { useCallback, useEffect, useState } from "react";
import { getToken, handleUnauthorized, setToken } from "./api";
import { Mail } from "./Mail";
import { SignIn } from "./SignIn";
import type { ClientConfig } from "./types";

const FALLBACK_CONFIG: ClientConfig = {
  realtime: { port: 8081, path: "/ws" },
  send_undo_seconds: 0,
  max_message_size: 25 * 1024 * 1024,
  clock_skew_ms: 0,
};

/** The public config, and how far the server's clock is from ours (its Date header). */
async function loadConfig(): Promise<ClientConfig> {
  const sent = Date.now();
  const response = await fetch("/api/v1/client-config", { headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(`client-config answered ${response.status}`);
  const config = (await response.json()) as Omit<ClientConfig, "clock_skew_ms">;
  const server = Date.parse(response.headers.get("date") ?? "");
  const skew = Number.isNaN(server) ? 0 : server - (sent + Date.now()) / 2;
  return { ...config, clock_skew_ms: Math.abs(skew) < 1500 ? 0 : skew };
}

export function App() {
  const [token, setCurrent] = useState(getToken);
  const [config, setConfig] = useState<ClientConfig | null>(null);

  useEffect(() => {
    loadConfig()
      .then(setConfig)
      .catch(() => setConfig(FALLBACK_CONFIG));
  }, []);

  const signedOut = useCallback(() => {
    setToken(null);
    setCurrent(null);
  }, []);
  useEffect(() => handleUnauthorized(signedOut), [signedOut]);

  const signedIn = useCallback((secret: string, address: string) => {
    setToken(secret);
    localStorage.setItem("postroom.address", address);
    setCurrent(secret);
  }, []);

  if (!token) return <SignIn onSignedIn={signedIn} />;
  if (!config) return <p className="loading">Loading…</p>;
  return <Mail key={token} config={config} onSignOut={signedOut} />;
}
