import react from "@vitejs/plugin-react";
import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

// The build is served by the FastAPI app (fleet web) from the package's static folder.
const outDir = fileURLToPath(new URL("../src/fleet_rlm/server/static", import.meta.url));
const api = process.env.FLEET_DEV_API ?? "http://127.0.0.1:8000";

export default defineConfig({
  plugins: [react()],
  base: "/",
  build: {
    outDir,
    emptyOutDir: true,
    // The first screen loads the app and React; Markdown, highlight.js and the pages other
    // than the Workbench are chunks of their own, loaded when first needed (React.lazy).
    chunkSizeWarningLimit: 250,
    rollupOptions: {
      output: {
        manualChunks: (id) => (/node_modules\/(react|react-dom|scheduler)\//.test(id) ? "react" : undefined),
      },
    },
  },
  server: {
    proxy: { "/api": { target: api, ws: true } },
  },
  test: {
    include: ["src/**/*.test.ts"],
    environment: "node",
  },
});
