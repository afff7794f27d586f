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

/** Polls until this tab leads; resolves with the time it did. */
window.benchWaitLeader = () =>
  new Promise((resolve) => {
    const tick = () => (db.status.leader ? resolve(now()) : setTimeout(tick, 2));
    tick();
  });

window.benchNow = now;
window.benchW57Ready = true;
