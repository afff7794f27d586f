import "todomvc-app-css/index.css";
import "./extra.css";

import { IbexProvider } from "@ibexdb/react";
import { StrictMode } from "react";
import { createRoot } from "react-dom/client";

import { App } from "./App";
import { Todo } from "./schema";

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <IbexProvider options={{ name: "todo", schemas: [Todo], server: "/" }} fallback={<p className="loading">Starting the database…</p>}>
      <App />
    </IbexProvider>
  </StrictMode>,
);
