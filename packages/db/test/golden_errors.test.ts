// `ENGINE_CODES` (src/wire/errors.ts) against every code the Rust engine
// and server send, from the golden file rust/server/tests/golden.rs writes.
import { describe, expect, it } from "vitest";

import { ENGINE_CODES, SDK_CODES } from "../src/wire/errors.js";
import { golden } from "./tagged.js";

const codes = golden("error_codes.json");
const strings = (x: unknown) => [...(x as string[])].sort();

describe("golden error codes", () => {
  it("ENGINE_CODES is exactly the engine's and the server's codes", () => {
    expect(strings(ENGINE_CODES)).toEqual(strings([...(codes.engine as string[]), ...(codes.server as string[])]));
    expect(new Set(ENGINE_CODES).size).toBe(ENGINE_CODES.length);
  });

  it("codes the server keeps to itself are not engine codes", () => {
    for (const c of codes.server_internal as string[]) expect(ENGINE_CODES as readonly string[]).not.toContain(c);
  });

  it("SDK codes are the SDK's own", () => {
    for (const c of SDK_CODES) expect(ENGINE_CODES as readonly string[]).not.toContain(c);
    expect(new Set(SDK_CODES).size).toBe(SDK_CODES.length);
  });
});
