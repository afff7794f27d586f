// The hooks' tests of ../test on React 18: the hooks' source and the tests
// are compiled from ../ (`dir`), and `dedupe` makes every "react" and "react-dom"
// import — theirs included — resolve to this folder's React 18.
import { defineConfig } from "vitest/config";

export default defineConfig({
  resolve: { dedupe: ["react", "react-dom", "use-sync-external-store"] },
  server: { fs: { allow: [".."] } },
  test: {
    dir: "..",
    include: ["test/**/*.test.tsx"],
    environment: "jsdom",
    testTimeout: 30_000,
    server: { deps: { inline: [/use-sync-external-store/] } },
  },
});
