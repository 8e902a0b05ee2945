import { defineConfig } from '@playwright/test';

// The server is started by Playwright itself from the debug build that `./dev.sh test` made, on a
// port of its own, so a developer's running `./dev.sh run` does not interfere.
const PORT = Number(process.env.E2E_PORT ?? 3100);
const BASE_URL = `http://127.0.0.1:${PORT}`;

const site = {
  LEPTOS_SITE_ROOT: 'target/site',
  LEPTOS_OUTPUT_NAME: 'saved-cards',
  LEPTOS_SITE_PKG_DIR: 'pkg',
  RUST_LOG: 'warn',
  // Every browser of the suite comes from 127.0.0.1: one address's budget would not last a run.
  IP_RATE_LIMIT_PER_MINUTE: '10000',
};

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
  webServer: process.env.E2E_INSTANCES === '2' ? twoInstances() : oneInstance(),
});

/** One server on SQLite with its embedded sandbox: a fresh database for every run. */
function oneInstance() {
  return {
    command: 'rm -rf target/e2e && mkdir -p target/e2e && exec ./target/debug/server',
    cwd: '..',
    url: `${BASE_URL}/`,
    reuseExistingServer: false,
    timeout: 60_000,
    stdout: 'pipe' as const,
    stderr: 'pipe' as const,
    env: {
      ...site,
      LEPTOS_SITE_ADDR: `127.0.0.1:${PORT}`,
      DATABASE_URL: 'sqlite://target/e2e/saved-cards.db',
      JETPAY_SANDBOX_ADDR: `127.0.0.1:${PORT + 2}`,
      JETPAY_SANDBOX_DB: 'memory',
    },
  };
}

/**
 * Two instances on one PostgreSQL database (`E2E_DATABASE_URL`, created empty by `./dev.sh
 * test`) behind a round-robin proxy on the test port: each browser connection lands on either
 * instance, and Jetpay's deliveries too. Instance A embeds the sandbox; B uses it as its Jetpay.
 */
function twoInstances() {
  const database = process.env.E2E_DATABASE_URL;
  if (!database) throw new Error('E2E_INSTANCES=2 needs E2E_DATABASE_URL (a PostgreSQL database)');
  const [a, b] = [PORT + 10, PORT + 11];
  const instance = (port: number, jetpay: Record<string, string>) => ({
    command: 'exec ./target/debug/server',
    cwd: '..',
    url: `http://127.0.0.1:${port}/health`,
    reuseExistingServer: false,
    timeout: 60_000,
    stdout: 'pipe' as const,
    stderr: 'pipe' as const,
    env: {
      ...site,
      ...jetpay,
      LEPTOS_SITE_ADDR: `127.0.0.1:${port}`,
      PUBLIC_URL: BASE_URL,
      DATABASE_URL: database,
    },
  });
  return [
    instance(a, { JETPAY_SANDBOX_ADDR: `127.0.0.1:${PORT + 2}`, JETPAY_SANDBOX_DB: 'memory' }),
    instance(b, { JETPAY_SANDBOX_URL: `http://127.0.0.1:${PORT + 2}` }),
    {
      command: `exec node round-robin-proxy.mjs ${PORT} ${a} ${b}`,
      url: `${BASE_URL}/health`,
      reuseExistingServer: false,
      timeout: 10_000,
    },
  ];
}
