// Where the longest main-thread task of a CPU profile went: the longest run
// of samples with no idle time between them, and the functions that ran
// most in it (self time). Used to attribute W3's long tasks:
//   IBEX_W3_PROFILE=/tmp/w3.cpuprofile node bench/run.mjs --only w3
//   node bench/longest_task.mjs /tmp/w3.cpuprofile
import { readFileSync } from "node:fs";

const p = JSON.parse(readFileSync(process.argv[2], "utf8"));
const byId = new Map(p.nodes.map((n) => [n.id, n]));
const name = (id) => {
  const f = byId.get(id).callFrame;
  return f.functionName || (f.url ? `(anonymous ${f.url.split("/").pop()}:${f.lineNumber})` : "(anonymous)");
};
const idle = new Set(p.nodes.filter((n) => n.callFrame.functionName === "(idle)").map((n) => n.id));
// Samples in time order; a task is a run of non-idle samples.
let t = p.startTime;
let best = { start: 0, end: 0, samples: [] };
let cur = { start: 0, end: 0, samples: [] };
for (let i = 0; i < p.samples.length; i++) {
  t += p.timeDeltas[i];
  const s = p.samples[i];
  if (idle.has(s) || p.timeDeltas[i] > 5_000) {
    if (cur.end - cur.start > best.end - best.start) best = cur;
    cur = { start: t, end: t, samples: [] };
    if (idle.has(s)) continue;
  }
  if (!cur.samples.length) cur.start = t;
  cur.samples.push([s, p.timeDeltas[i + 1] ?? 0]);
  cur.end = t;
}
if (cur.end - cur.start > best.end - best.start) best = cur;
const self = new Map();
for (const [s, dt] of best.samples) self.set(name(s), (self.get(name(s)) ?? 0) + dt);
console.log(`longest busy stretch: ${((best.end - best.start) / 1000).toFixed(1)} ms, ${best.samples.length} samples`);
for (const [k, us] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 15)) console.log(`${(us / 1000).toFixed(1).padStart(8)} ms  ${k}`);
