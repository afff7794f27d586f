// The data every browser workload shares: GoatDB's benchmark schema
// (title: string, count: number, tags: set) and row `i` of it.

// `tags` is an array: Ibex takes it as a Set; TinyBase stores it as an
// array cell (supported since TinyBase 8; the bench pins 10.0.1), as its
// users would, rather than as a JSON string every reader must parse;
// Dexie stores it as is.
export const row = (i) => ({ title: `Item ${i}`, count: i % 100, tags: i % 3 === 0 ? ["x", "y"] : ["y"] });

/** The SDK and the schema as an Ibex `defineSchema`. */
export async function ibexSchema() {
  const { IbexDB, defineSchema } = await import("/packages/db/dist/index.js");
  const S = defineSchema({ ns: "bench", version: 1, fields: { title: { type: "string", required: true }, count: { type: "number" }, tags: { type: "set" } } });
  return { IbexDB, S };
}
