// Writing a message: recipients with autocomplete, attachments uploaded with progress into
// the draft, the draft saved automatically, and send with an undo window (handled by Mail).
import { useCallback, useEffect, useRef, useState } from "react";
import { AddressInput } from "./AddressInput";
import { ApiError, api, apiUpload, authHeaders } from "./api";
import { fileSize, splitAddresses } from "./format";
import type { Attachment, AttachmentIn, Draft, SendRequest } from "./types";

export interface ComposeInit {
  to: string;
  cc: string;
  bcc: string;
  subject: string;
  text: string;
  inReplyTo: string | null;
  draftId: string | null;
  attachments: AttachmentIn[];
  /** Forwarding: the original's attachments, fetched and attached when the dialog opens. */
  forwardFrom?: { messageId: string; attachments: Attachment[] };
}

export const EMPTY_COMPOSE: ComposeInit = {
  to: "",
  cc: "",
  bcc: "",
  subject: "",
  text: "",
  inReplyTo: null,
  draftId: null,
  attachments: [],
};

interface FileState {
  key: number;
  name: string;
  type: string;
  size: number;
  content: string | null; // base64, once read
  progress: number; // 0..1 of its upload
  uploaded: boolean;
}

type Field = "to" | "cc" | "bcc" | "subject" | "body" | "attachments" | "general";
type Errors = Partial<Record<Field, string>>;

const SAVE_DELAY_MS = 1500;
let fileKeys = 0;

function fieldOf(name: string | null): Field {
  const head = (name ?? "").split(/[[.]/)[0] ?? "";
  if (head === "to" || head === "cc" || head === "bcc" || head === "subject") return head;
  if (head === "text" || head === "html") return "body";
  if (head === "attachments") return "attachments";
  return "general";
}

function errorsOf(error: unknown): Errors {
  if (!(error instanceof ApiError)) return { general: "something went wrong; try again" };
  const errors: Errors = {};
  const listed = error.fields.length ? error.fields : [{ field: error.field ?? "", message: error.message }];
  for (const item of listed) errors[fieldOf(item.field)] ??= item.message;
  return errors;
}

/** The API takes bare addresses: "Ann <ann@x>" is sent as "ann@x" (the name is for display). */
function addresses(value: string): string[] {
  return splitAddresses(value).map((item) => /<([^<>]*)>\s*$/.exec(item)?.[1]?.trim() ?? item);
}

function base64Of(blob: Blob): Promise<string> {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1] ?? "");
    reader.onerror = () => reject(reader.error ?? new Error("the file could not be read"));
    reader.readAsDataURL(blob);
  });
}

interface Props {
  init: ComposeInit;
  maxSize: number;
  /** When a send should go out (ISO time), if the client sets the undo window itself. */
  sendAt: () => string | null;
  onClose: () => void;
  onSent: (outboundId: string, snapshot: ComposeInit) => void;
}

export function Compose({ init, maxSize, sendAt, onClose, onSent }: Props) {
  const [to, setTo] = useState(init.to);
  const [cc, setCc] = useState(init.cc);
  const [bcc, setBcc] = useState(init.bcc);
  const [subject, setSubject] = useState(init.subject);
  const [body, setBody] = useState(init.text);
  const [files, setFiles] = useState<FileState[]>(() =>
    init.attachments.map((a) => ({
      key: ++fileKeys,
      name: a.filename,
      type: a.content_type,
      size: Math.floor((a.content.length * 3) / 4),
      content: a.content,
      progress: 0,
      uploaded: false,
    })),
  );
  const [errors, setErrors] = useState<Errors>({});
  const [status, setStatus] = useState("");
  const [sending, setSending] = useState(false);
  const draftId = useRef(init.draftId);
  const saved = useRef<string | null>(null); // the JSON last saved, to skip saving twice
  const tried = useRef<string | null>(null); // the JSON last sent, saved or refused
  const saving = useRef<Promise<boolean>>(Promise.resolve(true));
  const dialog = useRef<HTMLDivElement>(null);
  const closed = useRef(false);
  const touched = useRef(Boolean(init.forwardFrom || init.attachments.length));

  const request = useCallback(
    (send_at: string | null = null): SendRequest => ({
      to: addresses(to),
      cc: addresses(cc),
      bcc: addresses(bcc),
      subject,
      text: body,
      in_reply_to: init.inReplyTo,
      ...(send_at ? { send_at } : {}),
      attachments: files
        .filter((f) => f.content !== null)
        .map((f) => ({ filename: f.name, content_type: f.type || "application/octet-stream", content: f.content ?? "" })),
    }),
    [to, cc, bcc, subject, body, files, init.inReplyTo],
  );

  /** Save the draft (after any save in flight); false if the API refused it. Unless forced,
   * a version already tried is not sent again (a refused one waits for the next edit). */
  const save = useCallback((force = false, send_at: string | null = null): Promise<boolean> => {
    const run = async (): Promise<boolean> => {
      const payload = request(send_at);
      const { attachments = [], ...rest } = payload;
      const head = JSON.stringify({ ...rest, attachments: [] }).slice(0, -2);
      const pieces = attachments.map((a) => JSON.stringify(a));
      const bodyText = `${head}${pieces.join(",")}]}`;
      if (bodyText === saved.current && draftId.current) return true;
      if (!force && bodyText === tried.current) return false;
      tried.current = bodyText;
      // Where each attachment lies in the body, to turn upload progress into per-file bars.
      const encoder = new TextEncoder();
      let offset = encoder.encode(head).length;
      const ranges = pieces.map((piece) => {
        const start = offset;
        offset += encoder.encode(piece).length + 1;
        return [start, offset - 1] as const;
      });
      const pending = new Set(files.filter((f) => f.content !== null && !f.uploaded).map((f) => f.key));
      const keys = files.filter((f) => f.content !== null).map((f) => f.key);
      setStatus(pending.size ? "Uploading…" : "Saving draft…");
      try {
        const draft = await apiUpload<Draft>(
          draftId.current ? "PUT" : "POST",
          draftId.current ? `/drafts/${encodeURIComponent(draftId.current)}` : "/drafts",
          bodyText,
          (loaded) => {
            if (!pending.size) return;
            setFiles((all) =>
              all.map((f) => {
                const index = keys.indexOf(f.key);
                const range = ranges[index];
                if (!pending.has(f.key) || !range) return f;
                const [start, end] = range;
                return { ...f, progress: Math.max(0, Math.min(1, (loaded - start) / (end - start))) };
              }),
            );
          },
        );
        draftId.current = draft.id;
        saved.current = bodyText;
        setFiles((all) => all.map((f) => (keys.includes(f.key) ? { ...f, progress: 1, uploaded: true } : f)));
        setErrors({});
        if (!closed.current) setStatus("Draft saved");
        return true;
      } catch (error) {
        setErrors(errorsOf(error));
        setStatus("Draft not saved");
        return false;
      }
    };
    const next = saving.current.then(run, run);
    saving.current = next;
    return next;
  }, [request, files]);

  // Save automatically a moment after the last change.
  useEffect(() => {
    if (sending || !touched.current) return;
    const timer = window.setTimeout(() => void save(), SAVE_DELAY_MS);
    return () => window.clearTimeout(timer);
  }, [to, cc, bcc, subject, body, files, save, sending]);

  const edit =
    <T,>(setter: (value: T) => void) =>
    (value: T) => {
      touched.current = true;
      setter(value);
    };

  useEffect(() => {
    dialog.current?.querySelector<HTMLInputElement>(init.to ? "textarea" : "input")?.focus();
    const forward = init.forwardFrom;
    if (!forward) return;
    for (const attachment of forward.attachments) {
      const url = `/api/v1/messages/${encodeURIComponent(forward.messageId)}/attachments/${encodeURIComponent(attachment.id)}`;
      fetch(url, { headers: authHeaders() })
        .then((answer) => answer.blob())
        .then(base64Of)
        .then((content) =>
          setFiles((all) => [
            ...all,
            {
              key: ++fileKeys,
              name: attachment.filename,
              type: attachment.content_type,
              size: attachment.size,
              content,
              progress: 0,
              uploaded: false,
            },
          ]),
        )
        .catch(() => setErrors((e) => ({ ...e, attachments: `${attachment.filename} could not be forwarded` })));
    }
    // Runs once, when the dialog opens.
  }, []);

  async function attach(list: FileList | null) {
    if (!list) return;
    touched.current = true;
    const total = files.reduce((sum, f) => sum + f.size, 0);
    let room = maxSize - total;
    for (const file of Array.from(list)) {
      if (file.size > room) {
        setErrors((e) => ({ ...e, attachments: `${file.name} is too big: messages may be ${fileSize(maxSize)} in all` }));
        continue;
      }
      room -= file.size;
      const key = ++fileKeys;
      setFiles((all) => [
        ...all,
        { key, name: file.name, type: file.type, size: file.size, content: null, progress: 0, uploaded: false },
      ]);
      const content = await base64Of(file);
      setFiles((all) => all.map((f) => (f.key === key ? { ...f, content } : f)));
    }
  }

  async function send() {
    setSending(true);
    setStatus("Sending…");
    const snapshot: ComposeInit = {
      ...init,
      to,
      cc,
      bcc,
      subject,
      text: body,
      draftId: null,
      attachments: request().attachments ?? [],
      forwardFrom: undefined,
    };
    if (!(await save(true, sendAt())) || !draftId.current) {
      setSending(false);
      setStatus("");
      return;
    }
    try {
      const answer = await api<{ id: string }>(`/drafts/${encodeURIComponent(draftId.current)}/send`, {
        method: "POST",
      });
      closed.current = true;
      onSent(answer.id, snapshot);
    } catch (error) {
      setErrors(errorsOf(error));
      setSending(false);
      setStatus("");
    }
  }

  async function discard() {
    closed.current = true;
    await saving.current;
    if (draftId.current) {
      await api(`/drafts/${encodeURIComponent(draftId.current)}`, { method: "DELETE" }).catch(() => undefined);
    }
    onClose();
  }

  async function close() {
    await save();
    closed.current = true;
    onClose();
  }

  const fieldError = (field: Field) => errors[field] ?? null;
  return (
    <div
      className="compose"
      role="dialog"
      aria-label="Compose"
      ref={dialog}
      onKeyDown={(event) => {
        if (event.key === "Escape") {
          event.stopPropagation();
          void close();
        }
      }}
    >
      <div className="compose-head">
        <span>{init.inReplyTo ? "Reply" : "New message"}</span>
        <button type="button" onClick={close} aria-label="Close" title="Close (keeps the draft)">
          ✕
        </button>
      </div>
      <form
        onSubmit={(event) => {
          event.preventDefault();
          void send();
        }}
      >
        {errors.general && (
          <p role="alert" className="error">
            {errors.general}
          </p>
        )}
        <AddressInput label="To" value={to} error={fieldError("to")} onChange={edit(setTo)} />
        <AddressInput label="Cc" value={cc} error={fieldError("cc")} onChange={edit(setCc)} />
        <AddressInput label="Bcc" value={bcc} error={fieldError("bcc")} onChange={edit(setBcc)} />
        <TextField id="compose-subject" label="Subject" error={fieldError("subject")}>
          {(props) => <input {...props} type="text" value={subject} onChange={(e) => edit(setSubject)(e.target.value)} />}
        </TextField>
        <TextField id="compose-body" label="Body" error={fieldError("body")}>
          {(props) => <textarea {...props} rows={9} value={body} onChange={(e) => edit(setBody)(e.target.value)} />}
        </TextField>
        <TextField id="compose-files" label="Attach files" error={fieldError("attachments")}>
          {(props) => (
            <input
              {...props}
              type="file"
              multiple
              onChange={(event) => {
                void attach(event.target.files);
                event.target.value = "";
              }}
            />
          )}
        </TextField>
        {files.length > 0 && (
          <ul className="uploads" aria-label="Attached files">
            {files.map((file) => (
              <li key={file.key}>
                <span className="name">{file.name}</span> <span className="size">{fileSize(file.size)}</span>{" "}
                <progress
                  max={1}
                  value={file.uploaded ? 1 : file.progress}
                  aria-label={`Upload of ${file.name}`}
                />
                <button
                  type="button"
                  className="link"
                  aria-label={`Remove ${file.name}`}
                  onClick={() => setFiles((all) => all.filter((f) => f.key !== file.key))}
                >
                  Remove
                </button>
              </li>
            ))}
          </ul>
        )}
        <div className="compose-actions">
          <button type="submit" className="primary" disabled={sending}>
            Send
          </button>
          <button type="button" onClick={discard} disabled={sending}>
            Discard
          </button>
          <span role="status" className="compose-status">
            {status}
          </span>
        </div>
      </form>
    </div>
  );
}

interface FieldProps {
  id: string;
  "aria-describedby"?: string;
  "aria-invalid"?: boolean;
}

function TextField({
  id,
  label,
  error,
  children,
}: {
  id: string;
  label: string;
  error: string | null;
  children: (props: FieldProps) => React.ReactNode;
}) {
  const errorId = `${id}-error`;
  return (
    <div className="field">
      <label htmlFor={id}>{label}</label>
      {children({ id, "aria-describedby": error ? errorId : undefined, "aria-invalid": error ? true : undefined })}
      {error && (
        <p id={errorId} role="alert" className="field-error">
          {error}
        </p>
      )}
    </div>
  );
}
