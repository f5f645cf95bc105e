import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// The browser calls /api/... on the page's own origin; Vite forwards it to the Flask API with
// the /api prefix removed (GET /api/posts -> GET /posts). API_URL names the API to forward to.
//
// changeOrigin stays false: the API then sees the browser's Host (localhost:5173) and Origin
// (http://localhost:5173), a same-origin request, so its cross-site write check passes in every
// mode. With changeOrigin: true the Host would become 127.0.0.1:5555 while the Origin stays
// http://localhost:5173; that passes only because development mode trusts loopback origins.
const proxy = {
  "/api": {
    target: process.env.API_URL || "http://127.0.0.1:5555",
    changeOrigin: false,
    rewrite: (path) => path.replace(/^\/api/, ""),
  },
};

export default defineConfig({
  plugins: [react()],
  server: { port: 5173, strictPort: true, proxy }, // npm run dev (-- --port 3000 overrides)
  preview: { port: 4173, strictPort: true, proxy }, // npm run preview, serves dist/
});
