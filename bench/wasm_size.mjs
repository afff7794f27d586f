// Where the WASM module's bytes go: code size per crate (and per std module
// for core/alloc), read from the function names of the module cargo builds
// before wasm-bindgen and wasm-opt strip them (the name section). Sizes are
// of that unoptimized module; their shares are what to act on for W9.
import { readFileSync } from "node:fs";

function leb(b, i) {
  let r = 0;
  let s = 0;
  for (;;) {
    const x = b[i++];
    r += (x & 0x7f) * 2 ** s;
    s += 7;
    if (x < 0x80) return [r, i];
  }
}

/** Path segments of a legacy-mangled Rust symbol (`_ZN4core5slice…`). */
function segments(name) {
  if (!name.startsWith("_ZN")) return [];
  const out = [];
  let s = name.slice(3);
  for (let m = /^(\d+)/.exec(s); m; m = /^(\d+)/.exec(s)) {
    const len = Number(m[1]);
    out.push(s.slice(m[1].length, m[1].length + len));
    s = s.slice(m[1].length + len);
  }
  return out;
}

export function wasmBreakdown(file) {
  const b = readFileSync(file);
  let i = 8;
  let imported = 0;
  const code = [];
  const names = new Map();
  let data = 0;
  while (i < b.length) {
    const id = b[i++];
    let n;
    [n, i] = leb(b, i);
    const end = i + n;
    if (id === 2) {
      let [c, j] = leb(b, i);
      for (; c > 0; c--) {
        let l;
        [l, j] = leb(b, j);
        j += l;
        [l, j] = leb(b, j);
        j += l;
        const kind = b[j++];
        if (kind === 0) {
          [, j] = leb(b, j);
          imported++;
        } else if (kind === 1) {
          j++;
          const fl = b[j++];
          [, j] = leb(b, j);
          if (fl & 1) [, j] = leb(b, j);
        } else if (kind === 2) {
          const fl = b[j++];
          [, j] = leb(b, j);
          if (fl & 1) [, j] = leb(b, j);
        } else if (kind === 3) j += 2;
      }
    } else if (id === 10) {
      let [c, j] = leb(b, i);
      for (; c > 0; c--) {
        let sz;
        [sz, j] = leb(b, j);
        code.push(sz);
        j += sz;
      }
    } else if (id === 11) {
      data = n;
    } else if (id === 0) {
      let [l, j] = leb(b, i);
      const section = b.subarray(j, j + l).toString();
      j += l;
      if (section === "name") {
        while (j < end) {
          const sub = b[j++];
          let size;
          [size, j] = leb(b, j);
          if (sub === 1) {
            let [c, k] = leb(b, j);
            for (; c > 0; c--) {
              let idx;
              let len;
              [idx, k] = leb(b, k);
              [len, k] = leb(b, k);
              names.set(idx, b.subarray(k, k + len).toString());
              k += len;
            }
          }
          j += size;
        }
      }
    }
    i = end;
  }
  const by = new Map();
  code.forEach((size, k) => {
    const seg = segments(names.get(imported + k) ?? "");
    let key = seg[0] ?? "unnamed (v0-mangled or glue)";
    if (key === "core" || key === "alloc") key = seg.slice(0, 3).join("::");
    if (key.startsWith("_")) key = "trait impls on foreign types";
    by.set(key, (by.get(key) ?? 0) + size);
  });
  const total = code.reduce((a, x) => a + x, 0);
  const top = [...by].sort((a, b) => b[1] - a[1]).slice(0, 12).map(([what, bytes]) => ({ what, bytes }));
  return { file: "target/wasm32-unknown-unknown/wasm/ibex_wasm.wasm", codeBytes: total, dataBytes: data, functions: code.length, top };
}
