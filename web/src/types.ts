// The JSON shapes of the gateway API that the UI reads (see gateway/schemas.py).

export interface Mailbox {
  id: string;
  name: string;
  role: string | null;
  total: number;
  unread: number;
}

export interface Person {
  name: string;
  address: string;
}

export interface MessageItem {
  id: string;
  mailbox_id: string;
  thread: string;
  subject: string;
  from: Person;
  to: string[];
  cc: string[];
  date: string;
  received_at: string;
  snippet: string;
  size: number;
  seen: boolean;
  flagged: boolean;
  answered: boolean;
  has_attachments: boolean;
  /** Search results only: HTML-escaped text with matches in <mark>. */
  highlight?: string;
  subject_highlight?: string;
}

export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

export interface Attachment {
  id: string;
  filename: string;
  content_type: string;
  size: number;
}

export interface MessageDetail extends MessageItem {
  bcc: string[];
  message_id: string | null;
  in_reply_to: string | null;
  references: string[];
  text: string;
  html: string;
  attachments: Attachment[];
}

export interface Thread {
  id: string;
  subject: string;
  messages: MessageItem[];
}

export interface ClientConfig {
  realtime: { port: number; path: string; url?: string | null };
  send_undo_seconds: number;
  max_message_size: number;
  /** Client-side: the server's clock minus ours (from the Date header), in ms. */
  clock_skew_ms: number;
}

export interface AttachmentIn {
  filename: string;
  content_type: string;
  content: string;
}

export interface SendRequest {
  to: string[];
  cc: string[];
  bcc: string[];
  subject: string;
  text: string | null;
  in_reply_to?: string | null;
  send_at?: string | null;
  attachments?: AttachmentIn[];
}

export interface Draft {
  id: string;
  message_id: string;
  draft: SendRequest;
}

/** A realtime event, as the WebSocket and GET /events send it. */
export interface LiveEvent {
  type: string;
  seq: number;
  message?: Partial<MessageItem> & { id: string; mailbox_id?: string; mailbox?: string };
  mailbox?: Mailbox & { deleted?: boolean };
}
