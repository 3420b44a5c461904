// The conversation view: every message of the thread, oldest first. The one opened is
// expanded with its actions and body; the others show a line each and expand on click.
import { useEffect, useLayoutEffect, useState } from "react";
import { ApiError, api, download } from "./api";
import { displayName, fileSize, longDate } from "./format";
import { MessageBody } from "./MessageBody";
import type { MessageDetail, Thread } from "./types";

export type MessageAction = "reply" | "replyAll" | "forward" | "delete" | "archive" | "star";

interface Props {
  messageId: string;
  /** Bumped when a live event touched this conversation: reload it. */
  version: number;
  onAction: (action: MessageAction, detail: MessageDetail) => void;
  onExpanded: (detail: MessageDetail | null) => void;
  onLoaded: (thread: Thread) => void;
  onBack: () => void;
}

export function Reader({ messageId, version, onAction, onExpanded, onLoaded, onBack }: Props) {
  const [thread, setThread] = useState<Thread | null>(null);
  const [details, setDetails] = useState<Record<string, MessageDetail>>({});
  const [expanded, setExpanded] = useState(messageId);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => setExpanded(messageId), [messageId]);

  useEffect(() => {
    const controller = new AbortController();
    const { signal } = controller;
    (async () => {
      try {
        const opened = await api<MessageDetail>(`/messages/${encodeURIComponent(messageId)}`, { signal });
        const conversation = await api<Thread>(`/threads/${encodeURIComponent(opened.thread)}`, { signal });
        const loaded = await Promise.all(
          conversation.messages.map((m) =>
            m.id === opened.id
              ? opened
              : api<MessageDetail>(`/messages/${encodeURIComponent(m.id)}`, { signal }),
          ),
        );
        setDetails(Object.fromEntries(loaded.map((d) => [d.id, d])));
        setThread(conversation);
        setError(null);
        onLoaded(conversation);
      } catch (caught) {
        if ((caught as Error).name === "AbortError") return;
        setError(caught instanceof ApiError ? caught.message : "this message could not be loaded");
      }
    })();
    return () => controller.abort();
    // onLoaded changes identity on every render of the parent; the ids are what matter.
  }, [messageId, version]);

  const current = details[expanded] ?? null;
  // A layout effect, so the parent knows the message before the browser paints it: a key
  // pressed as soon as the message shows (r, a, f) must find it, which a passive effect,
  // run some time after the paint, did not promise.
  useLayoutEffect(() => onExpanded(current), [current, onExpanded]);

  if (error) {
    return (
      <section className="reader" aria-label="Conversation">
        <button type="button" className="back" onClick={onBack}>
          ← Back
        </button>
        <p role="alert" className="error">
          {error}
        </p>
      </section>
    );
  }
  if (!thread) return <section className="reader" aria-label="Conversation" aria-busy="true" />;

  return (
    <section className="reader" aria-label="Conversation">
      <div className="reader-top">
        <button type="button" className="back" onClick={onBack} aria-label="Back to list">
          ← Back
        </button>
        <h2>{thread.subject || "(no subject)"}</h2>
      </div>
      {thread.messages.map((item) => {
        const detail = details[item.id];
        if (!detail) return null;
        const open = item.id === expanded;
        return (
          <article key={item.id} aria-label="Message" className={open ? "message open" : "message"}>
            <header
              className="message-head"
              onClick={open ? undefined : () => setExpanded(item.id)}
              onKeyDown={(event) => {
                if (!open && (event.key === "Enter" || event.key === " ")) setExpanded(item.id);
              }}
              tabIndex={open ? undefined : 0}
              aria-expanded={open}
            >
              <span className="from">
                <strong>{displayName(detail.from)}</strong>{" "}
                <span className="address">&lt;{detail.from.address}&gt;</span>
              </span>
              <time dateTime={detail.date}>{longDate(detail.date)}</time>
              {open ? (
                <span className="recipients">
                  to {detail.to.join(", ") || "(no recipients)"}
                  {detail.cc.length > 0 && <> · cc {detail.cc.join(", ")}</>}
                </span>
              ) : (
                <span className="snippet">{detail.snippet}</span>
              )}
            </header>
            {open && (
              <>
                <div className="actions" role="toolbar" aria-label="Message actions">
                  <button type="button" onClick={() => onAction("reply", detail)}>
                    Reply
                  </button>
                  <button type="button" onClick={() => onAction("replyAll", detail)}>
                    Reply all
                  </button>
                  <button type="button" onClick={() => onAction("forward", detail)}>
                    Forward
                  </button>
                  <button type="button" onClick={() => onAction("archive", detail)}>
                    Archive
                  </button>
                  <button type="button" onClick={() => onAction("delete", detail)}>
                    Delete
                  </button>
                  <button
                    type="button"
                    aria-pressed={detail.flagged}
                    onClick={() => {
                      setDetails((all) => ({ ...all, [detail.id]: { ...detail, flagged: !detail.flagged } }));
                      onAction("star", detail);
                    }}
                  >
                    <span aria-hidden="true">{detail.flagged ? "★ " : "☆ "}</span>
                    Star
                  </button>
                </div>
                <MessageBody detail={detail} />
                {detail.attachments.length > 0 && <Attachments detail={detail} />}
              </>
            )}
          </article>
        );
      })}
    </section>
  );
}

function Attachments({ detail }: { detail: MessageDetail }) {
  const [error, setError] = useState<string | null>(null);
  return (
    <>
      <ul className="attachments" aria-label="Attachments">
        {detail.attachments.map((attachment) => {
          const path = `/messages/${encodeURIComponent(detail.id)}/attachments/${encodeURIComponent(attachment.id)}`;
          return (
            <li key={attachment.id}>
              <a
                href={`/api/v1${path}`}
                download={attachment.filename}
                onClick={(event) => {
                  event.preventDefault();
                  download(path, attachment.filename).catch((caught: Error) => setError(caught.message));
                }}
              >
                {attachment.filename}
              </a>{" "}
              <span className="size">{fileSize(attachment.size)}</span>
            </li>
          );
        })}
      </ul>
      {error && (
        <p role="alert" className="error">
          {error}
        </p>
      )}
    </>
  );
}
