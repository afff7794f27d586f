// Which React the hooks' tests ran on: `npm test` runs them on 19 and, with
// vitest.react18.config.ts, on 18 — this proves the second run really is 18.
import { version } from "react";
import { version as domVersion } from "react-dom";
import { expect, it } from "vitest";

it("runs on the React the configuration asks for", () => {
  const want = process.env.IBEX_REACT ?? "19";
  expect(version.split(".")[0]).toBe(want);
  expect(domVersion).toBe(version);
});
