// Untrusted text must become text nodes: only <mark> and http(s) links become elements.
import { isValidElement, type ReactElement, type ReactNode } from "react";
import { describe, expect, it } from "vitest";
import { highlighted, linkified } from "./rich";

type Props = { children?: ReactNode; href?: string };

function shape(nodes: ReactNode[]): (string | [string, string, string?])[] {
  return nodes.map((node) => {
    if (typeof node === "string") return node;
    if (!isValidElement(node)) throw new Error(`unexpected node ${String(node)}`);
    const element = node as ReactElement<Props>;
    return element.props.href === undefined
      ? [String(element.type), String(element.props.children)]
      : [String(element.type), String(element.props.children), element.props.href];
  });
}

describe("highlighted", () => {
  it("turns <mark> into elements and unescapes the rest as text", () => {
    expect(shape(highlighted("a &lt;b&gt; <mark>lunch</mark> &amp; &#x27;more&#39;"))).toEqual([
      "a <b> ",
      ["mark", "lunch"],
      " & 'more'",
    ]);
  });

  it("never makes markup of anything else, even unescaped", () => {
    const nodes = highlighted('<img src=x onerror="alert(1)"><mark><b>x</b></mark>');
    expect(shape(nodes)).toEqual(['<img src=x onerror="alert(1)">', ["mark", "<b>x</b>"]]);
  });
});

describe("linkified", () => {
  it("links http(s) and www URLs, leaving trailing punctuation outside", () => {
    expect(shape(linkified("See https://example.org/menu, or www.example.com."))).toEqual([
      "See ",
      ["a", "https://example.org/menu", "https://example.org/menu"],
      ", or ",
      ["a", "www.example.com", "https://www.example.com"],
      ".",
    ]);
  });

  it("never links other schemes", () => {
    expect(shape(linkified("javascript:alert(1) data:text/html,x"))).toEqual([
      "javascript:alert(1) data:text/html,x",
    ]);
  });
});
