import { defineSchema } from "@ibexdb/db";

export const Todo = defineSchema({
  ns: "todo",
  version: 1,
  fields: {
    title: { type: "string", required: true },
    completed: { type: "boolean", default: false },
    createdAt: { type: "date", required: true },
  },
});

export type TodoFields = typeof Todo.fields;
/** `?list=groceries` opens another list (shareable by URL); default "todos". */
const list = new URLSearchParams(location.search).get("list") ?? "todos";
export const TODOS = `/data/${/^[A-Za-z0-9_-]{1,64}$/.test(list) ? list : "todos"}`;
