import { describe, expect, it } from "vitest";
import { bareAddress, fileSize, splitAddresses } from "./format";

describe("splitAddresses", () => {
  it("splits on commas and semicolons outside quotes and angle brackets", () => {
    expect(splitAddresses('"Doe, Jane" <jane@x.test>, bob@y.test; <odd,one@z.test> ,')).toEqual([
      '"Doe, Jane" <jane@x.test>',
      "bob@y.test",
      "<odd,one@z.test>",
    ]);
  });
});

describe("bareAddress", () => {
  it("takes the address out of a display form", () => {
    expect(bareAddress("Ann <Ann@X.test>")).toBe("ann@x.test");
    expect(bareAddress(" bob@y.test ")).toBe("bob@y.test");
  });
});

describe("fileSize", () => {
  it("reads like a person would write it", () => {
    expect([fileSize(512), fileSize(9_000), fileSize(20_000), fileSize(3 * 1024 * 1024)]).toEqual([
      "512 B",
      "8.8 KB",
      "20 KB",
      "3.0 MB",
    ]);
  });
});
