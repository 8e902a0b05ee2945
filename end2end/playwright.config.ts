import { defineConfig } from '@playwright/test';

// The server is started by Playwright itself from the debug build that `./dev.sh test` made, on a
// port of its own, so a developer's running `./dev.sh run` does not interfere.
const PORT = Number(process.env.E2E_PORT ?? 3100);
const BASE_URL = `http://127.0.0.1:${PORT}`;

export default defineConfig({
  testDir: './tests',
  timeout: 30_000,
  expect: { timeout: 10_000 },
  fullyParallel: false,
  workers: 1,
  forbidOnly: !!process.env.CI,
  retries: 0,
  reporter: [['list']],
  use: {
    baseURL: BASE_URL,
    trace: 'retain-on-failure',
    launchOptions: {
      executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
        '--disable-quic',
      ],
    },
  },
  webServer: {
    // A fresh database and an in-memory sandbox for every run.
    command: 'rm -rf target/e2e && mkdir -p target/e2e && exec ./target/debug/server',
    cwd: '..',
    url: `${BASE_URL}/`,
    reuseExistingServer: false,
    timeout: 60_000,
    stdout: 'pipe',
    stderr: 'pipe',
    env: {
      LEPTOS_SITE_ADDR: `127.0.0.1:${PORT}`,
      LEPTOS_SITE_ROOT: 'target/site',
      LEPTOS_OUTPUT_NAME: 'saved-cards',
      LEPTOS_SITE_PKG_DIR: 'pkg',
      RUST_LOG: 'warn',
      DATABASE_URL: 'sqlite://target/e2e/saved-cards.db',
      JETPAY_SANDBOX_ADDR: `127.0.0.1:${PORT + 2}`,
      JETPAY_SANDBOX_DB: 'memory',
    },
  },
});
