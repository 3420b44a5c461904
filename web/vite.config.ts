import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// `npm run dev` serves the app on :5173 and forwards the API to a running gateway
// (POSTROOM_GATEWAY, default http://127.0.0.1:8080). The WebSocket goes straight to the
// realtime port the gateway names in /api/v1/client-config.
const gateway = process.env.POSTROOM_GATEWAY ?? "http://127.0.0.1:8080";

export default defineConfig({
  plugins: [react()],
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    // No inline scripts: the gateway's CSP allows scripts from this origin only.
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
  },
  server: {
    proxy: { "/api": gateway },
  },
});
