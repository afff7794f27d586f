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
export const TODOS = "/data/todos";
