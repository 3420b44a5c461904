// The signed-in view: header, mailboxes, the message grid, the conversation, compose, live
// updates and keyboard shortcuts. State lives here; the pieces below only draw and report.
import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import { ApiError, api } from "./api";
import { Compose, type ComposeInit, EMPTY_COMPOSE } from "./Compose";
import { bareAddress, longDate, personLabel } from "./format";
import { Help } from "./Help";
import { LiveEvents, type LiveState } from "./live";
import { MessageList } from "./MessageList";
import { type MessageAction, Reader } from "./Reader";
import { navigate, type Route, useRoute } from "./route";
import { Sidebar, mailboxKey } from "./Sidebar";
import type { ClientConfig, Draft, LiveEvent, Mailbox, MessageDetail, MessageItem, Page } from "./types";

const FIRST_PAGE = 100;
const NEXT_PAGE = 200;
const CLIENT_UNDO_SECONDS = 5;

interface ListState {
  key: string;
  items: MessageItem[];
  cursor: string | null;
  loading: boolean;
  error: string | null;
}

interface Toast {
  text: string;
  undo?: () => void;
}

function listKey(route: Route): string {
  return route.kind === "search" ? `search:${route.query}` : `mailbox:${route.mailbox}`;
}

function findMailbox(mailboxes: Mailbox[], ref: string): Mailbox | undefined {
  const lower = ref.toLowerCase();
  return mailboxes.find((m) => m.role === ref || m.id === ref || m.name.toLowerCase() === lower);
}

function quote(detail: MessageDetail): string {
  const text = detail.text || new DOMParser().parseFromString(detail.html, "text/html").body.textContent || "";
  const who = personLabel(detail.from.name, detail.from.address);
  return `\n\nOn ${longDate(detail.date)}, ${who} wrote:\n${text
    .trimEnd()
    .split("\n")
    .map((line) => `> ${line}`)
    .join("\n")}\n`;
}

function prefixed(prefix: string, subject: string): string {
  return subject.toLowerCase().startsWith(prefix.toLowerCase()) ? subject : `${prefix} ${subject}`;
}

function isTyping(target: EventTarget | null): boolean {
  const element = target as HTMLElement | null;
  if (!element) return false;
  return (
    element.isContentEditable ||
    ["INPUT", "TEXTAREA", "SELECT"].includes(element.tagName) ||
    Boolean(element.closest?.("[role=dialog]"))
  );
}

export function Mail({ config, onSignOut }: { config: ClientConfig; onSignOut: () => void }) {
  const route = useRoute();
  const me = (localStorage.getItem("postroom.address") ?? "").toLowerCase();
  const [mailboxes, setMailboxes] = useState<Mailbox[]>([]);
  const [list, setList] = useState<ListState>({ key: "", items: [], cursor: null, loading: true, error: null });
  const [cursor, setCursor] = useState(0);
  const [selected, setSelected] = useState<Set<string>>(new Set());
  const [compose, setCompose] = useState<ComposeInit | null>(null);
  const [toast, setToast] = useState<Toast | null>(null);
  const [help, setHelp] = useState(false);
  const [menu, setMenu] = useState(false);
  const [moveOpen, setMoveOpen] = useState(false);
  const [live, setLive] = useState<LiveState>("connecting");
  const [readerVersion, setReaderVersion] = useState(0);
  const [reload, setReload] = useState(0);
  const [query, setQuery] = useState(route.kind === "search" ? route.query : "");
  const expanded = useRef<MessageDetail | null>(null);
  const threadIds = useRef<Set<string>>(new Set());
  const openThread = useRef<string | null>(null);
  const search = useRef<HTMLInputElement>(null);
  const toastTimer = useRef<number | undefined>(undefined);

  const key = listKey(route);
  const currentBox = route.kind === "mailbox" ? findMailbox(mailboxes, route.mailbox) : undefined;
  const currentKey = route.kind === "mailbox" ? (currentBox ? mailboxKey(currentBox) : route.mailbox) : null;
  const openId = route.message;
  const items = list.key === key ? list.items : [];

  const state = useRef({ key, currentBox, items, route });
  state.current = { key, currentBox, items, route };

  const showToast = useCallback((next: Toast | null, clearAfterMs?: number) => {
    window.clearTimeout(toastTimer.current);
    setToast(next);
    if (next && clearAfterMs) toastTimer.current = window.setTimeout(() => setToast(null), clearAfterMs);
  }, []);

  const fail = useCallback(
    (error: unknown) => showToast({ text: error instanceof ApiError ? error.message : "that did not work; try again" }, 6000),
    [showToast],
  );

  // -- loading ----------------------------------------------------------------------------

  const loadMailboxes = useCallback(async () => {
    const answer = await api<{ items: Mailbox[] }>("/mailboxes");
    setMailboxes(answer.items);
  }, []);

  const fetchPage = useCallback(async (route: Route, cursor: string | null): Promise<Page<MessageItem>> => {
    const limit = cursor ? NEXT_PAGE : FIRST_PAGE;
    const after = cursor ? `&cursor=${encodeURIComponent(cursor)}` : "";
    if (route.kind === "search") {
      return api(`/search?q=${encodeURIComponent(route.query)}&limit=${Math.min(limit, 100)}${after}`);
    }
    return api(`/messages?mailbox=${encodeURIComponent(route.mailbox)}&limit=${limit}${after}`);
  }, []);

  // Live events first (the sequence now), then the state: nothing in between is missed.
  useEffect(() => {
    let events: LiveEvents | null = null;
    let stopped = false;
    (async () => {
      const { latest } = await api<{ latest: number }>("/changes");
      await loadMailboxes();
      if (stopped) return;
      events = new LiveEvents(config, latest, {
        onEvent: (event) => handleEvent.current(event),
        onResync: () => setReload((n) => n + 1),
        onState: setLive,
      });
      events.start();
    })().catch(fail);
    return () => {
      stopped = true;
      events?.stop();
    };
  }, [config, loadMailboxes, fail, reload]);

  useEffect(() => {
    if (route.kind === "search" && !route.query) return;
    let stale = false;
    setList({ key, items: [], cursor: null, loading: true, error: null });
    setSelected(new Set());
    setCursor(0);
    fetchPage(route, null)
      .then((page) => {
        if (!stale) setList({ key, items: page.items, cursor: page.next_cursor, loading: false, error: null });
      })
      .catch((error: unknown) => {
        if (!stale)
          setList({ key, items: [], cursor: null, loading: false, error: error instanceof ApiError ? error.message : "the list could not be loaded" });
      });
    return () => {
      stale = true;
    };
    // The list depends on which list it is (key), not on the message open in it.
  }, [key, reload, fetchPage]);

  const loadMore = useCallback(() => {
    if (list.loading || !list.cursor || list.key !== key) return;
    const from = list.cursor;
    setList((l) => ({ ...l, loading: true }));
    fetchPage(state.current.route, from)
      .then((page) =>
        setList((l) => {
          if (l.key !== key) return l;
          const known = new Set(l.items.map((m) => m.id));
          return { ...l, items: [...l.items, ...page.items.filter((m) => !known.has(m.id))], cursor: page.next_cursor, loading: false };
        }),
      )
      .catch((error: unknown) => {
        setList((l) => ({ ...l, loading: false }));
        fail(error);
      });
  }, [list, key, fetchPage, fail]);

  // -- live events -------------------------------------------------------------------------

  const patchItems = useCallback((change: (items: MessageItem[]) => MessageItem[]) => {
    setList((l) => ({ ...l, items: change(l.items) }));
  }, []);

  const handleEvent = useRef<(event: LiveEvent) => void>(() => {});
  handleEvent.current = (event: LiveEvent) => {
    const { currentBox, route } = state.current;
    if (event.type === "mailbox.counts" && event.mailbox) {
      const box = event.mailbox;
      setMailboxes((all) => {
        if (box.deleted) return all.filter((m) => m.id !== box.id);
        if (!all.some((m) => m.id === box.id)) return [...all, { id: box.id, name: box.name, role: box.role, total: box.total, unread: box.unread }];
        return all.map((m) => (m.id === box.id ? { ...m, name: box.name, total: box.total, unread: box.unread } : m));
      });
      return;
    }
    const message = event.message;
    if (!message) return;
    // The open conversation gained or lost a message: draw it again.
    const inThread =
      (event.type === "mail.new" && message.thread !== undefined && message.thread === openThread.current) ||
      (event.type === "mail.deleted" && threadIds.current.has(message.id));
    if (inThread) setReaderVersion((v) => v + 1);
    const inView = route.kind === "mailbox" && currentBox !== undefined && message.mailbox_id === currentBox.id;
    if (event.type === "mail.new") {
      if (!inView) return;
      const item: MessageItem = {
        id: message.id,
        mailbox_id: message.mailbox_id ?? "",
        thread: message.thread ?? "",
        subject: message.subject ?? "",
        from: message.from ?? { name: "", address: "" },
        to: [],
        cc: [],
        date: message.date ?? new Date().toISOString(),
        received_at: new Date().toISOString(),
        snippet: message.snippet ?? "",
        size: 0,
        seen: message.seen ?? false,
        flagged: false,
        answered: false,
        has_attachments: false,
      };
      patchItems((items) => (items.some((m) => m.id === item.id) ? items : [item, ...items]));
      setCursor((c) => (c > 0 ? c + 1 : c));
      // The event is a summary: fill in the rest (flags, attachments) from the API.
      api<MessageItem>(`/messages/${encodeURIComponent(item.id)}`)
        .then((full) => patchItems((items) => items.map((m) => (m.id === full.id ? { ...m, ...pickItem(full) } : m))))
        .catch(() => undefined);
    } else if (event.type === "mail.updated") {
      const movedAway = route.kind === "mailbox" && currentBox !== undefined && message.mailbox_id !== undefined && message.mailbox_id !== currentBox.id;
      patchItems((items) =>
        movedAway
          ? items.filter((m) => m.id !== message.id)
          : items.map((m) =>
              m.id === message.id
                ? { ...m, seen: message.seen ?? m.seen, flagged: message.flagged ?? m.flagged, answered: message.answered ?? m.answered, mailbox_id: message.mailbox_id ?? m.mailbox_id }
                : m,
            ),
      );
      if (inView && !state.current.items.some((m) => m.id === message.id)) {
        api<MessageItem>(`/messages/${encodeURIComponent(message.id)}`)
          .then((full) =>
            patchItems((items) =>
              items.some((m) => m.id === full.id)
                ? items
                : [...items, pickItem(full)].sort((a, b) => b.received_at.localeCompare(a.received_at)),
            ),
          )
          .catch(() => undefined);
      }
    } else if (event.type === "mail.deleted") {
      if (route.kind === "search" || inView) patchItems((items) => items.filter((m) => m.id !== message.id));
    }
  };

  // -- actions -----------------------------------------------------------------------------

  const bulk = useCallback(
    async (ids: string[], body: Record<string, unknown>) => {
      if (!ids.length) return;
      await api("/messages/bulk", { method: "POST", body: { ids, ...body } }).catch(fail);
    },
    [fail],
  );

  const setFlags = useCallback(
    (ids: string[], flags: { seen?: boolean; flagged?: boolean }) => {
      const chosen = new Set(ids);
      patchItems((items) => items.map((m) => (chosen.has(m.id) ? { ...m, ...flags } : m)));
      void bulk(ids, { action: "flags", ...flags });
    },
    [bulk, patchItems],
  );

  const closeMessage = useCallback(() => {
    const r = state.current.route;
    navigate(r.kind === "search" ? { ...r, message: null } : { ...r, message: null });
  }, []);

  const removeFromView = useCallback(
    (ids: string[], body: Record<string, unknown>, done: string) => {
      const chosen = new Set(ids);
      const { items } = state.current;
      const nextOpen = openId && chosen.has(openId) ? items.find((m, i) => !chosen.has(m.id) && i > items.findIndex((x) => x.id === openId)) : undefined;
      patchItems((all) => all.filter((m) => !chosen.has(m.id)));
      setSelected(new Set());
      if (openId && chosen.has(openId)) {
        const r = state.current.route;
        navigate({ ...r, message: nextOpen?.id ?? null }, true);
      }
      bulk(ids, body).then(() => showToast({ text: done }, 4000), fail);
    },
    [bulk, patchItems, openId, showToast, fail],
  );

  const archive = useCallback((ids: string[]) => removeFromView(ids, { action: "move", mailbox: "archive" }, "Archived"), [removeFromView]);
  const remove = useCallback((ids: string[]) => removeFromView(ids, { action: "delete" }, "Deleted"), [removeFromView]);
  const moveTo = useCallback(
    (ids: string[], box: Mailbox) => removeFromView(ids, { action: "move", mailbox: box.id }, `Moved to ${box.name}`),
    [removeFromView],
  );

  const open = useCallback(
    (index: number) => {
      const item = state.current.items[index];
      if (!item) return;
      setCursor(index);
      const r = state.current.route;
      if (currentBox?.role === "drafts") {
        void openDraft(item.id);
        return;
      }
      navigate({ ...r, message: item.id });
    },
    [currentBox],
  );

  async function openDraft(messageId: string) {
    try {
      const drafts = await api<{ items: Draft[] }>("/drafts");
      const draft = drafts.items.find((d) => d.message_id === messageId);
      if (!draft) {
        navigate({ ...state.current.route, message: messageId });
        return;
      }
      const d = draft.draft;
      setCompose({
        to: d.to.join(", "),
        cc: d.cc.join(", "),
        bcc: d.bcc.join(", "),
        subject: d.subject,
        text: d.text ?? "",
        inReplyTo: d.in_reply_to ?? null,
        draftId: draft.id,
        attachments: d.attachments ?? [],
      });
    } catch (error) {
      fail(error);
    }
  }

  const onThreadLoaded = useCallback(
    (thread: { id: string; messages: MessageItem[] }) => {
      openThread.current = thread.id;
      threadIds.current = new Set(thread.messages.map((m) => m.id));
      const unread = thread.messages.filter((m) => !m.seen).map((m) => m.id);
      if (unread.length) setFlags(unread, { seen: true });
    },
    [setFlags],
  );
  useEffect(() => {
    if (openId) return;
    threadIds.current = new Set();
    openThread.current = null;
  }, [openId]);

  const startCompose = useCallback(
    (action: MessageAction | "new", detail: MessageDetail | null) => {
      if (action === "new" || !detail) {
        setCompose({ ...EMPTY_COMPOSE });
        return;
      }
      if (action === "reply" || action === "replyAll") {
        const sender = personLabel(detail.from.name, detail.from.address);
        const others = action === "replyAll" ? detail.to.filter((a) => bareAddress(a) !== me && bareAddress(a) !== detail.from.address.toLowerCase()) : [];
        const fromMe = detail.from.address.toLowerCase() === me;
        setCompose({
          ...EMPTY_COMPOSE,
          to: (fromMe ? detail.to : [sender, ...others]).join(", "),
          cc: action === "replyAll" ? detail.cc.filter((a) => bareAddress(a) !== me).join(", ") : "",
          subject: prefixed("Re:", detail.subject),
          text: quote(detail),
          inReplyTo: detail.id,
        });
      } else if (action === "forward") {
        const header = [
          "",
          "",
          "---------- Forwarded message ----------",
          `From: ${personLabel(detail.from.name, detail.from.address)}`,
          `Date: ${longDate(detail.date)}`,
          `Subject: ${detail.subject}`,
          `To: ${detail.to.join(", ")}`,
          "",
          detail.text || new DOMParser().parseFromString(detail.html, "text/html").body.textContent || "",
        ].join("\n");
        setCompose({
          ...EMPTY_COMPOSE,
          subject: prefixed("Fwd:", detail.subject),
          text: header,
          forwardFrom: detail.attachments.length ? { messageId: detail.id, attachments: detail.attachments } : undefined,
        });
      }
    },
    [me],
  );

  const onAction = useCallback(
    (action: MessageAction, detail: MessageDetail) => {
      if (action === "delete") remove([detail.id]);
      else if (action === "archive") archive([detail.id]);
      else if (action === "star") setFlags([detail.id], { flagged: !detail.flagged });
      else startCompose(action, detail);
    },
    [remove, archive, setFlags, startCompose],
  );

  // The undo window: the server's (POSTROOM_SEND_UNDO_SECONDS) when it has one; otherwise the
  // send is scheduled a few seconds ahead (send_at, on the server's clock), cancellable the same way.
  const undoSeconds = config.send_undo_seconds > 0 ? config.send_undo_seconds : CLIENT_UNDO_SECONDS;
  const sendAt = useCallback(
    () =>
      config.send_undo_seconds > 0
        ? null
        : new Date(Date.now() + config.clock_skew_ms + CLIENT_UNDO_SECONDS * 1000).toISOString(),
    [config],
  );

  const onSent = useCallback(
    (outboundId: string, snapshot: ComposeInit) => {
      setCompose(null);
      const windowMs = undoSeconds * 1000;
      let undone = false;
      const undo = async () => {
        undone = true;
        showToast({ text: "Undoing…" });
        try {
          await api(`/send/${encodeURIComponent(outboundId)}`, { method: "DELETE" });
          showToast({ text: "Sending undone" }, 4000);
          setCompose(snapshot);
        } catch (error) {
          showToast({ text: error instanceof ApiError && error.status === 409 ? "Too late to undo: the message has gone out" : "Undo failed" }, 6000);
        }
      };
      showToast({ text: "Sending…", undo: windowMs > 0 ? () => void undo() : undefined });
      window.setTimeout(() => {
        if (!undone) showToast({ text: "Sent" }, 5000);
      }, Math.max(windowMs, 800));
    },
    [undoSeconds, showToast],
  );

  async function signOut() {
    await api("/auth/logout", { method: "POST" }).catch(() => undefined);
    onSignOut();
  }

  // -- keyboard ----------------------------------------------------------------------------

  const keys = useRef<(event: KeyboardEvent) => void>(() => {});
  keys.current = (event: KeyboardEvent) => {
    if (event.ctrlKey || event.metaKey || event.altKey || isTyping(event.target) || help) return;
    const onControl = (event.target as HTMLElement | null)?.closest?.("button, a, [role=row] input");
    if (event.key === "Enter" && onControl) return; // Enter on a button is that button's
    const { items } = state.current;
    const here = items[cursor];
    const targets = selected.size ? [...selected] : openId ? [openId] : here ? [here.id] : [];
    const detail = expanded.current;
    const handled = (() => {
      switch (event.key) {
        case "j":
        case "k": {
          const next = Math.max(0, Math.min(items.length - 1, cursor + (event.key === "j" ? 1 : -1)));
          setCursor(next);
          if (openId) open(next);
          return true;
        }
        case "o":
        case "Enter":
          open(cursor);
          return true;
        case "u":
        case "Escape":
          if (openId) closeMessage();
          else setSelected(new Set());
          return true;
        case "x":
          if (here) setSelected((s) => toggle(s, here.id));
          return true;
        case "s":
          if (here) setFlags([here.id], { flagged: !here.flagged });
          return true;
        case "r":
        case "a":
        case "f":
          if (detail) startCompose(event.key === "r" ? "reply" : event.key === "a" ? "replyAll" : "forward", detail);
          return true;
        case "c":
          startCompose("new", null);
          return true;
        case "e":
          archive(targets);
          return true;
        case "#":
          remove(targets);
          return true;
        case "/":
          search.current?.focus();
          return true;
        case "?":
          setHelp(true);
          return true;
        default:
          return false;
      }
    })();
    if (handled) event.preventDefault();
  };
  useEffect(() => {
    const listener = (event: KeyboardEvent) => keys.current(event);
    window.addEventListener("keydown", listener);
    return () => window.removeEventListener("keydown", listener);
  }, []);

  // -- drawing -----------------------------------------------------------------------------

  const selectedIds = useMemo(() => [...selected], [selected]);
  const title = route.kind === "search" ? `Search: ${route.query}` : (currentBox?.name ?? route.mailbox);
  useEffect(() => {
    const unread = mailboxes.find((m) => m.role === "inbox")?.unread ?? 0;
    document.title = `${unread ? `(${unread}) ` : ""}${title} · postroom`;
  }, [mailboxes, title]);

  return (
    <div className={`app${openId ? " reading" : ""}${menu ? " menu-open" : ""}`}>
      <header className="topbar">
        <button type="button" className="menu-button" aria-label="Menu" aria-expanded={menu} onClick={() => setMenu((m) => !m)}>
          ☰
        </button>
        <span className="brand">postroom</span>
        <form
          role="search"
          className="search"
          onSubmit={(event) => {
            event.preventDefault();
            const q = query.trim();
            if (q) navigate({ kind: "search", query: q, message: null });
            search.current?.blur();
          }}
        >
          <input
            ref={search}
            type="search"
            aria-label="Search mail"
            placeholder="Search mail (from: subject: is:unread …)"
            value={query}
            onChange={(event) => setQuery(event.target.value)}
          />
        </form>
        <button type="button" className="primary" onClick={() => startCompose("new", null)}>
          Compose
        </button>
        <button type="button" aria-label="Keyboard shortcuts" title="Keyboard shortcuts (?)" onClick={() => setHelp(true)}>
          ?
        </button>
        <span className={`live live-${live}`} title={`Updates: ${live}`} aria-hidden="true">
          ●
        </span>
        <button type="button" onClick={signOut}>
          Sign out
        </button>
      </header>
      <Sidebar mailboxes={mailboxes} current={currentKey} onPick={() => setMenu(false)} />
      {menu && <div className="scrim" aria-hidden="true" onClick={() => setMenu(false)} />}
      <main className="content">
        <section className="list-pane" aria-label={title}>
          <div className="list-head">
            <h1>{title}</h1>
            {selected.size > 0 && (
              <div className="bulk" role="toolbar" aria-label="Selected messages">
                <span>{selected.size} selected</span>
                <button type="button" onClick={() => { setFlags(selectedIds, { seen: true }); setSelected(new Set()); }}>
                  Mark read
                </button>
                <button type="button" onClick={() => { setFlags(selectedIds, { seen: false }); setSelected(new Set()); }}>
                  Mark unread
                </button>
                <div
                  className="move"
                  onKeyDown={(event) => {
                    if (event.key === "Escape") {
                      event.stopPropagation();
                      setMoveOpen(false);
                    }
                  }}
                >
                  <button type="button" aria-haspopup="menu" aria-expanded={moveOpen} onClick={() => setMoveOpen((o) => !o)}>
                    Move to
                  </button>
                  {moveOpen && (
                    <ul role="menu" aria-label="Mailboxes to move to">
                      {mailboxes
                        .filter((m) => m.id !== currentBox?.id)
                        .map((m) => (
                          <li key={m.id} role="none">
                            <button type="button" role="menuitem" onClick={() => { setMoveOpen(false); moveTo(selectedIds, m); }}>
                              {m.name}
                            </button>
                          </li>
                        ))}
                    </ul>
                  )}
                </div>
                <button type="button" onClick={() => remove(selectedIds)}>
                  Delete
                </button>
              </div>
            )}
          </div>
          {list.error && list.key === key && (
            <p role="alert" className="error">
              {list.error}
            </p>
          )}
          <MessageList
            items={items}
            hasMore={list.key === key && list.cursor !== null}
            loading={list.key !== key || list.loading}
            loadMore={loadMore}
            cursor={cursor}
            openId={openId}
            selected={selected}
            search={route.kind === "search"}
            empty={route.kind === "search" ? "No messages match." : "No messages here."}
            onOpen={open}
            onToggleSelect={(id) => setSelected((s) => toggle(s, id))}
            onStar={(item) => setFlags([item.id], { flagged: !item.flagged })}
          />
        </section>
        {openId && (
          <Reader
            messageId={openId}
            version={readerVersion}
            onAction={onAction}
            onExpanded={(d) => {
              expanded.current = d;
            }}
            onLoaded={onThreadLoaded}
            onBack={closeMessage}
          />
        )}
      </main>
      {compose && (
        <Compose
          init={compose}
          maxSize={config.max_message_size}
          sendAt={sendAt}
          onClose={() => setCompose(null)}
          onSent={onSent}
        />
      )}
      <div className="toast" role="status">
        {toast && (
          <>
            <span>{toast.text}</span>
            {toast.undo && (
              <button type="button" onClick={toast.undo}>
                Undo
              </button>
            )}
          </>
        )}
      </div>
      {help && <Help onClose={() => setHelp(false)} />}
    </div>
  );
}

function toggle(set: ReadonlySet<string>, id: string): Set<string> {
  const next = new Set(set);
  if (next.has(id)) next.delete(id);
  else next.add(id);
  return next;
}

function pickItem(detail: MessageItem): MessageItem {
  const { id, mailbox_id, thread, subject, from, to, cc, date, received_at, snippet, size, seen, flagged, answered, has_attachments } = detail;
  return { id, mailbox_id, thread, subject, from, to, cc, date, received_at, snippet, size, seen, flagged, answered, has_attachments };
}
