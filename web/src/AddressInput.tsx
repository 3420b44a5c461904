// A recipients field: comma-separated addresses, with suggestions for the one being typed
// from the people the user has corresponded with (GET /api/v1/contacts?q=).
import { useEffect, useId, useRef, useState } from "react";
import { api } from "./api";
import { personLabel, splitAddresses } from "./format";
import type { Person } from "./types";

interface Props {
  label: string;
  value: string;
  error: string | null;
  onChange: (value: string) => void;
}

function currentToken(value: string): string {
  const parts = value.split(/[,;]/);
  return (parts[parts.length - 1] ?? "").trim();
}

export function AddressInput({ label, value, error, onChange }: Props) {
  const id = useId();
  const [suggestions, setSuggestions] = useState<Person[]>([]);
  const [active, setActive] = useState(-1);
  const [focused, setFocused] = useState(false);
  const typed = useRef(false);
  const token = currentToken(value);

  useEffect(() => {
    if (!typed.current || !focused || token.length < 1) {
      setSuggestions([]);
      return;
    }
    const controller = new AbortController();
    const timer = window.setTimeout(() => {
      api<{ items: Person[] }>(`/contacts?q=${encodeURIComponent(token)}&limit=8`, {
        signal: controller.signal,
      })
        .then((answer) => {
          setSuggestions(answer.items);
          setActive(-1);
        })
        .catch(() => setSuggestions([]));
    }, 150);
    return () => {
      window.clearTimeout(timer);
      controller.abort();
    };
  }, [token, focused]);

  function choose(person: Person) {
    const done = splitAddresses(value);
    done.pop();
    onChange([...done, personLabel(person.name, person.address)].join(", ") + ", ");
    typed.current = false;
    setSuggestions([]);
  }

  const open = focused && suggestions.length > 0;
  const errorId = `${id}-error`;
  return (
    <div className="field address-field">
      <label htmlFor={id}>{label}</label>
      <div className="combo">
        <input
          id={id}
          type="text"
          autoComplete="off"
          aria-autocomplete="list"
          aria-controls={`${id}-list`}
          aria-activedescendant={open && active >= 0 ? `${id}-opt-${active}` : undefined}
          aria-invalid={error ? true : undefined}
          aria-describedby={error ? errorId : undefined}
          value={value}
          onFocus={() => setFocused(true)}
          onBlur={() => window.setTimeout(() => setFocused(false), 150)}
          onChange={(event) => {
            typed.current = true;
            onChange(event.target.value);
          }}
          onKeyDown={(event) => {
            if (!open) return;
            if (event.key === "ArrowDown") {
              event.preventDefault();
              setActive((i) => Math.min(suggestions.length - 1, i + 1));
            } else if (event.key === "ArrowUp") {
              event.preventDefault();
              setActive((i) => Math.max(0, i - 1));
            } else if ((event.key === "Enter" || event.key === "Tab") && active >= 0) {
              event.preventDefault();
              const person = suggestions[active];
              if (person) choose(person);
            } else if (event.key === "Escape") {
              event.stopPropagation();
              setSuggestions([]);
            }
          }}
        />
        <ul id={`${id}-list`} role="listbox" aria-label="Suggested recipients" hidden={!open} className="suggestions">
          {suggestions.map((person, index) => (
            <li
              key={person.address}
              id={`${id}-opt-${index}`}
              role="option"
              aria-selected={index === active}
              onMouseDown={(event) => {
                event.preventDefault();
                choose(person);
              }}
            >
              {person.name ? (
                <>
                  {person.name} <span className="address">&lt;{person.address}&gt;</span>
                </>
              ) : (
                person.address
              )}
            </li>
          ))}
        </ul>
      </div>
      {error && (
        <p id={errorId} role="alert" className="field-error">
          {error}
        </p>
      )}
    </div>
  );
}
