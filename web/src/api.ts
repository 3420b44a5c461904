// The one way the UI talks to the gateway: fetch with the bearer token, JSON errors as ApiError.

const TOKEN_KEY = "postroom.token";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly field: string | null = null,
    readonly fields: { field: string; message: string }[] = [],
    readonly code: string = "error",
  ) {
    super(message);
  }
}

export function getToken(): string | null {
  return localStorage.getItem(TOKEN_KEY);
}

export function setToken(token: string | null): void {
  if (token) localStorage.setItem(TOKEN_KEY, token);
  else localStorage.removeItem(TOKEN_KEY);
}

let onUnauthorized: () => void = () => {};

/** Called when the token is refused (expired or revoked): the app goes back to sign-in. */
export function handleUnauthorized(callback: () => void): void {
  onUnauthorized = callback;
}

/** An ApiError from an error response body `{"error": {code, message, field, fields}}`. */
export function errorFrom(status: number, body: unknown): ApiError {
  const error = (body as { error?: Record<string, unknown> } | null)?.error;
  if (error && typeof error.message === "string") {
    const fields = Array.isArray(error.fields)
      ? (error.fields as { field: string; message: string }[])
      : [];
    return new ApiError(
      status,
      error.message,
      typeof error.field === "string" ? error.field : null,
      fields,
      typeof error.code === "string" ? error.code : "error",
    );
  }
  return new ApiError(status, `the server answered ${status}`);
}

export function authHeaders(): Record<string, string> {
  const token = getToken();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

export async function api<T>(
  path: string,
  init: { method?: string; body?: unknown; signal?: AbortSignal; form?: URLSearchParams } = {},
): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json", ...authHeaders() };
  let body: BodyInit | undefined;
  if (init.form) {
    body = init.form;
  } else if (init.body !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(init.body);
  }
  let response: Response;
  try {
    response = await fetch(`/api/v1${path}`, {
      method: init.method ?? (body ? "POST" : "GET"),
      headers,
      body,
      signal: init.signal,
    });
  } catch (error) {
    if ((error as Error).name === "AbortError") throw error;
    throw new ApiError(0, "the server cannot be reached; check your connection");
  }
  if (response.status === 204) return undefined as T;
  const data: unknown = await response.json().catch(() => null);
  if (!response.ok) {
    const error = errorFrom(response.status, data);
    if (response.status === 401 && !path.startsWith("/auth/")) onUnauthorized();
    throw error;
  }
  return data as T;
}

/** A request with upload progress (fetch has none): XMLHttpRequest and its upload events. */
export function apiUpload<T>(
  method: string,
  path: string,
  body: string,
  onProgress: (loaded: number, total: number) => void,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, `/api/v1${path}`);
    xhr.setRequestHeader("Content-Type", "application/json");
    xhr.setRequestHeader("Accept", "application/json");
    for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (event) => onProgress(event.loaded, event.total);
    xhr.onerror = () => reject(new ApiError(0, "the upload failed; check your connection"));
    xhr.onload = () => {
      let data: unknown = null;
      try {
        data = JSON.parse(xhr.responseText);
      } catch {
        data = null;
      }
      if (xhr.status >= 200 && xhr.status < 300) resolve(data as T);
      else {
        if (xhr.status === 401) onUnauthorized();
        reject(errorFrom(xhr.status, data));
      }
    };
    xhr.send(body);
  });
}

/** Download one of the user's files (the token travels in a header, so no plain link). */
export async function download(path: string, filename: string): Promise<void> {
  const response = await fetch(`/api/v1${path}`, { headers: authHeaders() });
  if (!response.ok) throw errorFrom(response.status, await response.json().catch(() => null));
  const url = URL.createObjectURL(await response.blob());
  const link = document.createElement("a");
  link.href = url;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
