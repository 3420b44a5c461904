// Turning untrusted text into React nodes without innerHTML: highlights and links.
import type { ReactNode } from "react";

const ENTITIES: Record<string, string> = {
  amp: "&",
  lt: "<",
  gt: ">",
  quot: '"',
  apos: "'",
  nbsp: "\u00a0",
};

function unescapeHtml(text: string): string {
  return text.replace(/&(#x[0-9a-f]+|#[0-9]+|[a-z]+);/gi, (whole, name: string) => {
    if (name[0] === "#") {
      const code = name[1] === "x" || name[1] === "X" ? parseInt(name.slice(2), 16) : parseInt(name.slice(1), 10);
      return Number.isFinite(code) && code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : whole;
    }
    return ENTITIES[name.toLowerCase()] ?? whole;
  });
}

/**
 * The API's highlight strings are escaped HTML whose only markup is <mark>…</mark>. They are
 * split on that tag and every other piece is unescaped into a text node, so even a server bug
 * could not inject markup here.
 */
export function highlighted(html: string): ReactNode[] {
  const nodes: ReactNode[] = [];
  let inside = false;
  html.split(/(<\/?mark>)/i).forEach((piece, index) => {
    const tag = piece.toLowerCase();
    if (tag === "<mark>") inside = true;
    else if (tag === "</mark>") inside = false;
    else if (piece) {
      const text = unescapeHtml(piece);
      nodes.push(inside ? <mark key={index}>{text}</mark> : text);
    }
  });
  return nodes;
}

const URL_PATTERN = /\b(?:https?:\/\/|www\.)[^\s<>"'`]+/gi;
const TRAILING = /[).,;:!?\]}'"]+$/;

/** Plain text with http(s) URLs as links; everything else stays text. */
export function linkified(text: string): ReactNode[] {
  const nodes: ReactNode[] = [];
  let last = 0;
  for (const match of text.matchAll(URL_PATTERN)) {
    const start = match.index ?? 0;
    let url = match[0];
    const trail = TRAILING.exec(url);
    if (trail) url = url.slice(0, url.length - trail[0].length);
    if (!url) continue;
    if (start > last) nodes.push(text.slice(last, start));
    const href = url.toLowerCase().startsWith("www.") ? `https://${url}` : url;
    nodes.push(
      <a key={start} href={href} target="_blank" rel="noopener noreferrer nofollow">
        {url}
      </a>,
    );
    last = start + url.length;
  }
  if (last < text.length) nodes.push(text.slice(last));
  return nodes;
}
