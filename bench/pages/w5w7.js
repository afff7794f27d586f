// W5 (sync through ibex-server) and W7 (tabs) helpers. The runner opens
// pages in one or two browser contexts and times an edit made in one page
// until it is visible in another. Times use performance.timeOrigin +
// performance.now(), comparable across pages of one machine.

const now = () => performance.timeOrigin + performance.now();

let db = null;
let S = null;

/** Opens the database (synced with the server that served this page). */
window.benchOpen = async (name, repo, withServer) => {
  const { IbexDB, defineSchema } = await import("/packages/db/dist/index.js");
  S = defineSchema({ ns: "bench", version: 1, fields: { title: { type: "string", required: true }, count: { type: "number" } } });
  db = await IbexDB.open({ name, schemas: [S], ...(withServer ? { server: "/" } : {}) });
  await db.open(repo);
  if (withServer) await db.sync(20_000);
  return db.status.leader;
};

/** Writes item `key`; returns the time just before the write. */
window.benchWrite = (repo, key) => {
  const t0 = now();
  db.create(repo, S, { title: `at ${t0}`, count: 1 }, { key });
  return t0;
};

/** Resolves with the time item `key` becomes visible here. */
window.benchWaitFor = (repo, key) =>
  new Promise((resolve) => {
    const path = `${repo}/${key}`;
    if (db.item(path)) return resolve(now());
    const off = db.watchItem(path, () => {
      off();
      resolve(now());
    });
  });

window.benchLeader = () => db.status.leader;

/** W7 hand-over as the user of the remaining tab meets it. Called as soon
 * as the leader tab has closed: sets field `count` of item `path` here at
 * once (this tab may still be a follower talking to the closed leader) and
 * resolves when the engine that serves this tab now has made that write
 * durable — its worker started, the repository reopened from OPFS, the
 * write applied and flushed.
 *
 * Why two flushes: after a hand-over the SDK re-sends unanswered requests
 * before the unacknowledged write batches, so a `flush()` issued while the
 * old leader was gone can be answered by the new engine before it has
 * applied the write. `status.pendingWrites` tells: if it is 0 when the
 * first flush resolves, the write's outcome arrived before the flush's
 * answer, so that flush covered it; otherwise the second flush — sent
 * after the re-sent batch, to the same engine — is the one that does. */
window.benchHandoverWrite = async (path, value) => {
  const item = db.item(path);
  if (!item) throw new Error(`benchHandoverWrite: no item ${path}`);
  const wrote = now();
  item.set("count", value);
  await db.flush();
  const firstFlush = now();
  const early = db.status.pendingWrites > 0;
  await db.flush();
  const secondFlush = now();
  return { wrote, durable: early ? secondFlush : firstFlush, early, leader: db.status.leader };
};

/** The value of field `count` of item `path` here (undefined if absent). */
window.benchCount = (path) => db.item(path)?.get("count");

/** Polls until this tab leads; resolves with the time it did. */
window.benchWaitLeader = () =>
  new Promise((resolve) => {
    const tick = () => (db.status.leader ? resolve(now()) : setTimeout(tick, 2));
    tick();
  });

window.benchNow = now;
window.benchW57Ready = true;
