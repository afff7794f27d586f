// A small static file server (no dependencies) for the browser tests that
// load the SDK from the repository root (playwright/pages):
// node scripts/serve.mjs <dir> <port> [host] [--spa]
// With --spa, unknown paths serve index.html. The demo itself is served by
// ibex-server (`npm run demo`).
import { createReadStream, existsSync, statSync } from "node:fs";
import { createServer } from "node:http";
import { extname, join, normalize, resolve } from "node:path";

const [dirArg = ".", portArg = "8080", host = "127.0.0.1"] = process.argv.slice(2).filter((a) => !a.startsWith("--"));
const spa = process.argv.includes("--spa");
const root = resolve(dirArg);
const types = { ".html": "text/html; charset=utf-8", ".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm", ".json": "application/json", ".css": "text/css", ".map": "application/json", ".png": "image/png", ".svg": "image/svg+xml" };

createServer((req, res) => {
  let path = normalize(decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname));
  if (path.endsWith("/")) path += "index.html";
  let file = join(root, path);
  const ok = (f) => f.startsWith(root) && existsSync(f) && statSync(f).isFile();
  if (!ok(file) && spa) file = join(root, "index.html");
  if (!ok(file)) {
    res.writeHead(404, { "content-type": "text/plain" }).end("not found");
    return;
  }
  res.writeHead(200, { "content-type": types[extname(file)] ?? "application/octet-stream", "cache-control": "no-cache" });
  createReadStream(file).pipe(res);
}).listen(Number(portArg), host, () => console.log(`serving ${root} on http://${host}:${portArg}`));
