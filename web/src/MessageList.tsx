// The message grid: virtualised (only the rows on screen are in the DOM), so 10 000 messages
// scroll as smoothly as 10; the next page is fetched as the end comes into view.
import { useVirtualizer } from "@tanstack/react-virtual";
import { type MouseEvent, useEffect, useRef } from "react";
import { displayName, shortDate } from "./format";
import { highlighted } from "./rich";
import type { MessageItem } from "./types";

export const ROW_HEIGHT = 64;
const PREFETCH_ROWS = 30;

interface Props {
  items: MessageItem[];
  hasMore: boolean;
  loading: boolean;
  loadMore: () => void;
  cursor: number;
  openId: string | null;
  selected: ReadonlySet<string>;
  search: boolean;
  empty: string;
  onOpen: (index: number) => void;
  onToggleSelect: (id: string, range: boolean) => void;
  onStar: (item: MessageItem) => void;
}

export function MessageList(props: Props) {
  const { items, hasMore, loading, loadMore, cursor } = props;
  const scroller = useRef<HTMLDivElement>(null);
  const virtualizer = useVirtualizer({
    count: items.length + (hasMore ? 1 : 0),
    getScrollElement: () => scroller.current,
    estimateSize: () => ROW_HEIGHT,
    overscan: 12,
    getItemKey: (index) => items[index]?.id ?? "more",
  });
  const rows = virtualizer.getVirtualItems();
  const lastIndex = rows.length ? (rows[rows.length - 1]?.index ?? 0) : 0;

  useEffect(() => {
    if (hasMore && !loading && lastIndex >= items.length - PREFETCH_ROWS) loadMore();
  }, [hasMore, loading, lastIndex, items.length, loadMore]);

  useEffect(() => {
    if (cursor >= 0 && cursor < items.length) virtualizer.scrollToIndex(cursor, { align: "auto" });
  }, [cursor, items.length, virtualizer]);

  return (
    <div
      className="list-scroller"
      ref={scroller}
      role="grid"
      aria-label="Messages"
      aria-rowcount={hasMore ? -1 : items.length}
      aria-multiselectable="true"
      tabIndex={0}
      aria-activedescendant={items[cursor] ? `row-${items[cursor]?.id}` : undefined}
      aria-busy={loading}
    >
      {!items.length && !loading && <p className="empty">{props.empty}</p>}
      <div className="list-inner" style={{ height: virtualizer.getTotalSize() }} role="rowgroup">
        {rows.map((row) => {
          const item = items[row.index];
          const style = { transform: `translateY(${row.start}px)`, height: row.size };
          if (!item) {
            return (
              <div key="more" className="row more" style={style} role="row" aria-rowindex={row.index + 1}>
                <span role="gridcell">Loading more…</span>
              </div>
            );
          }
          return (
            <Row
              key={item.id}
              item={item}
              index={row.index}
              style={style}
              isCursor={row.index === cursor}
              isOpen={item.id === props.openId}
              isSelected={props.selected.has(item.id)}
              search={props.search}
              onOpen={props.onOpen}
              onToggleSelect={props.onToggleSelect}
              onStar={props.onStar}
            />
          );
        })}
      </div>
    </div>
  );
}

interface RowProps {
  item: MessageItem;
  index: number;
  style: React.CSSProperties;
  isCursor: boolean;
  isOpen: boolean;
  isSelected: boolean;
  search: boolean;
  onOpen: (index: number) => void;
  onToggleSelect: (id: string, range: boolean) => void;
  onStar: (item: MessageItem) => void;
}

function Row({ item, index, style, isCursor, isOpen, isSelected, search, ...on }: RowProps) {
  const unread = !item.seen;
  const classes = ["row", unread && "unread", isCursor && "cursor", isOpen && "open", isSelected && "selected"];
  const stop = (event: MouseEvent) => event.stopPropagation();
  return (
    <div
      role="row"
      id={`row-${item.id}`}
      data-testid="message-row"
      data-message-id={item.id}
      data-unread={unread ? "true" : "false"}
      aria-selected={isCursor || isSelected}
      aria-rowindex={index + 1}
      className={classes.filter(Boolean).join(" ")}
      style={style}
      onClick={() => on.onOpen(index)}
    >
      <span role="gridcell" className="cell-select" onClick={stop}>
        <input
          type="checkbox"
          aria-label="Select"
          checked={isSelected}
          onChange={(event) =>
            on.onToggleSelect(item.id, (event.nativeEvent as globalThis.MouseEvent).shiftKey)
          }
        />
      </span>
      <span role="gridcell" className="cell-star" onClick={stop}>
        <button
          type="button"
          className="star"
          aria-label="Star"
          aria-pressed={item.flagged}
          title={item.flagged ? "Starred (s)" : "Not starred (s)"}
          onClick={() => on.onStar(item)}
        >
          {item.flagged ? "★" : "☆"}
        </button>
      </span>
      <span role="gridcell" className="cell-from" title={item.from.address}>
        {displayName(item.from)}
      </span>
      <span role="gridcell" className="cell-main">
        <span data-testid="row-subject" className="subject">
          {search && item.subject_highlight
            ? highlighted(item.subject_highlight)
            : item.subject || "(no subject)"}
        </span>
        <span className="snippet">
          {search && item.highlight ? highlighted(item.highlight) : item.snippet}
        </span>
      </span>
      <span role="gridcell" className="cell-date">
        {item.has_attachments && (
          <svg className="clip" role="img" aria-label="Has attachments" viewBox="0 0 16 16" width="14" height="14">
            <path
              d="M11 4.5v6a3 3 0 0 1-6 0V4a2 2 0 0 1 4 0v6a1 1 0 0 1-2 0V5"
              fill="none"
              stroke="currentColor"
              strokeWidth="1.3"
              strokeLinecap="round"
            />
          </svg>
        )}
        <time dateTime={item.date}>{shortDate(item.date)}</time>
      </span>
    </div>
  );
}
