// One message's body: sanitised HTML in a sandboxed iframe under its own strict CSP, or plain
// text with its links made clickable; never untrusted markup in the app's own document.
import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import { api } from "./api";
import { linkified } from "./rich";
import type { MessageDetail } from "./types";

function framePolicy(remoteImages: boolean): string {
  const images = remoteImages ? "data: https: http:" : "data:";
  return `default-src 'none'; img-src ${images}; style-src 'unsafe-inline'; font-src data:; form-action 'none'`;
}

function escapeAttribute(value: string): string {
  return value.replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;");
}

/** The iframe document: the API's sanitised HTML inside a shell that forbids all scripts. */
function frameDocument(html: string, remoteImages: boolean): string {
  return (
    "<!doctype html><html><head><meta charset=\"utf-8\">" +
    `<meta http-equiv="Content-Security-Policy" content="${escapeAttribute(framePolicy(remoteImages))}">` +
    '<meta name="referrer" content="no-referrer">' +
    "<style>html{color-scheme:light}body{margin:0;padding:4px;font:14px/1.5 system-ui,sans-serif;" +
    "color:#1b1b1f;background:#fff;overflow-wrap:anywhere}img{max-width:100%;height:auto}" +
    "pre{white-space:pre-wrap}</style></head><body>" +
    html +
    "</body></html>"
  );
}

/** Remote images the API dropped leave <img> without src (parsed inertly: nothing loads). */
function hasBlockedImages(html: string): boolean {
  if (!/<img/i.test(html)) return false;
  const doc = new DOMParser().parseFromString(html, "text/html");
  return Array.from(doc.images).some((image) => !image.getAttribute("src"));
}

export function MessageBody({ detail }: { detail: MessageDetail }) {
  const [html, setHtml] = useState(detail.html);
  const [remote, setRemote] = useState(false);
  const [loadingImages, setLoadingImages] = useState(false);
  const frame = useRef<HTMLIFrameElement>(null);
  useEffect(() => {
    setHtml(detail.html);
    setRemote(false);
  }, [detail.id, detail.html]);
  const blocked = useMemo(() => !remote && hasBlockedImages(html), [html, remote]);

  const fit = useCallback(() => {
    const doc = frame.current?.contentDocument;
    if (!doc || !frame.current) return;
    frame.current.style.height = `${doc.documentElement.scrollHeight + 4}px`;
  }, []);

  const loaded = useCallback(() => {
    const doc = frame.current?.contentDocument;
    if (!doc) return;
    for (const link of Array.from(doc.querySelectorAll("a[href]"))) {
      link.setAttribute("target", "_blank");
      link.setAttribute("rel", "noopener noreferrer nofollow");
    }
    for (const image of Array.from(doc.images)) image.addEventListener("load", fit);
    fit();
  }, [fit]);

  async function showImages() {
    setLoadingImages(true);
    try {
      const full = await api<MessageDetail>(`/messages/${encodeURIComponent(detail.id)}?images=1`);
      setHtml(full.html);
      setRemote(true);
    } finally {
      setLoadingImages(false);
    }
  }

  if (!html) {
    return (
      <div data-testid="text-body" className="text-body">
        {linkified(detail.text)}
      </div>
    );
  }
  return (
    <div className="html-body">
      {blocked && (
        <p className="images-blocked">
          Remote images are blocked to protect your privacy.{" "}
          <button type="button" onClick={showImages} disabled={loadingImages}>
            Show images
          </button>
        </p>
      )}
      <iframe
        ref={frame}
        title="Message body"
        sandbox="allow-same-origin allow-popups allow-popups-to-escape-sandbox"
        referrerPolicy="no-referrer"
        srcDoc={frameDocument(html, remote)}
        onLoad={loaded}
      />
    </div>
  );
}
