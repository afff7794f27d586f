// The data every browser workload shares: GoatDB's benchmark schema
// (title: string, count: number, tags: set) and row `i` of it.

export const row = (i) => ({ title: `Item ${i}`, count: i % 100, tags: i % 3 === 0 ? ["x", "y"] : ["y"] });

/** The SDK and the schema as an Ibex `defineSchema`. */
export async function ibexSchema() {
  const { IbexDB, defineSchema } = await import("/packages/db/dist/index.js");
  const S = defineSchema({ ns: "bench", version: 1, fields: { title: { type: "string", required: true }, count: { type: "number" }, tags: { type: "set" } } });
  return { IbexDB, S };
}
