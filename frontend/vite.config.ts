/// <reference types="vitest/config" />
import { defineConfig } from 'vite'
import react from '@vitejs/plugin-react'
import tailwindcss from '@tailwindcss/vite'

// The gateway serves the build at / (SPA fallback). In development, `vite` and
// `vite preview` proxy the API to a running `chatgate serve` (CHATGATE_API_URL).
const target = process.env.CHATGATE_API_URL ?? 'http://127.0.0.1:8080'
const proxy = Object.fromEntries(
  ['/api', '/v1', '/health'].map((path) => [path, { target, changeOrigin: false }]),
)

// The same policy the gateway sends for the UI, so `vite preview` catches violations.
export const CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
  "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; " +
  "form-action 'self'; frame-ancestors 'none'"

export default defineConfig({
  plugins: [react(), tailwindcss()],
  build: {
    outDir: '../src/chatgate/web/static',
    emptyOutDir: true,
    assetsDir: 'assets',
    sourcemap: false,
    chunkSizeWarningLimit: 1500,
  },
  server: { proxy },
  preview: { proxy, headers: { 'Content-Security-Policy': CSP } },
  test: {
    environment: 'jsdom',
    include: ['tests/**/*.test.{ts,tsx}'],
    setupFiles: ['tests/setup.ts'],
    css: false,
  },
})
