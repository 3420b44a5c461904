// The URL is the view: /mail/<mailbox>[/<message id>] and /search?q=<query>[&open=<id>].
// A hand-rolled router (history API) keeps the bundle small; the gateway serves index.html
// for these deep links.
import { useEffect, useState } from "react";

export type Route =
  | { kind: "mailbox"; mailbox: string; message: string | null }
  | { kind: "search"; query: string; message: string | null };

export function parseRoute(loc: Location = location): Route {
  const parts = loc.pathname.split("/").filter(Boolean).map(decodeURIComponent);
  const params = new URLSearchParams(loc.search);
  if (parts[0] === "search") {
    return { kind: "search", query: params.get("q") ?? "", message: params.get("open") };
  }
  if (parts[0] === "mail" && parts[1]) {
    return { kind: "mailbox", mailbox: parts[1], message: parts[2] ?? null };
  }
  return { kind: "mailbox", mailbox: "inbox", message: null };
}

export function routeUrl(route: Route): string {
  if (route.kind === "search") {
    const params = new URLSearchParams({ q: route.query });
    if (route.message) params.set("open", route.message);
    return `/search?${params.toString()}`;
  }
  const base = `/mail/${encodeURIComponent(route.mailbox)}`;
  return route.message ? `${base}/${encodeURIComponent(route.message)}` : base;
}

const CHANGE = "postroom:navigate";

export function navigate(route: Route, replace = false): void {
  const url = routeUrl(route);
  if (url === location.pathname + location.search) return;
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  window.dispatchEvent(new Event(CHANGE));
}

export function useRoute(): Route {
  const [route, setRoute] = useState(parseRoute);
  useEffect(() => {
    const update = () => setRoute(parseRoute());
    window.addEventListener("popstate", update);
    window.addEventListener(CHANGE, update);
    return () => {
      window.removeEventListener("popstate", update);
      window.removeEventListener(CHANGE, update);
    };
  }, []);
  return route;
}
