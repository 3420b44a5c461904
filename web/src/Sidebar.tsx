// The mailboxes, each with its unread count; the current one marked aria-current="page".
import { navigate } from "./route";
import type { Mailbox } from "./types";

export function mailboxKey(mailbox: Mailbox): string {
  return mailbox.role ?? mailbox.id;
}

export function Sidebar({
  mailboxes,
  current,
  onPick,
}: {
  mailboxes: Mailbox[];
  current: string | null;
  onPick: () => void;
}) {
  return (
    <nav aria-label="Mailboxes" className="sidebar">
      <ul>
        {mailboxes.map((mailbox) => {
          const key = mailboxKey(mailbox);
          const here = key === current;
          return (
            <li key={mailbox.id}>
              <a
                href={`/mail/${encodeURIComponent(key)}`}
                aria-current={here ? "page" : undefined}
                className={mailbox.unread ? "has-unread" : undefined}
                onClick={(event) => {
                  if (event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return;
                  event.preventDefault();
                  navigate({ kind: "mailbox", mailbox: key, message: null });
                  onPick();
                }}
              >
                <span className="name">{mailbox.name}</span>
                {mailbox.unread > 0 && (
                  <span className="count" data-testid="unread-count">
                    {mailbox.unread}
                  </span>
                )}
              </a>
            </li>
          );
        })}
      </ul>
    </nav>
  );
}
