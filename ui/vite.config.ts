import { defineConfig } from "vite";
import preact from "@preact/preset-vite";

// Served by `medic serve` under /ui/ (engine/src/api/ui.rs embeds dist/ into the
// binary). `npm run dev` proxies the API to a local medic serve on :7777.
export default defineConfig({
  base: "/ui/",
  plugins: [preact()],
  build: { outDir: "dist", emptyOutDir: true, sourcemap: false },
  server: {
    proxy: {
      "/v1": "http://127.0.0.1:7777",
      "/openapi.json": "http://127.0.0.1:7777",
    },
  },
});
