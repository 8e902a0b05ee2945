import { test as base, expect, Page } from '@playwright/test';

/**
 * Every test fails on a console error or an uncaught page error: a broken hydration or a missing
 * asset shows up there first.
 */
export const test = base.extend<{ consoleErrors: string[] }>({
  consoleErrors: [
    async ({ page }, use) => {
      const errors: string[] = [];
      page.on('console', (msg) => {
        if (msg.type() === 'error') errors.push(msg.text());
      });
      page.on('pageerror', (err) => errors.push(err.message));
      await use(errors);
      expect(errors, 'console errors').toEqual([]);
    },
    { auto: true },
  ],
});

/** Waits until the WASM has hydrated the page; clicks before that would do nothing. */
export async function waitForHydration(page: Page) {
  await expect(page.locator('[data-hydrated="true"]')).toBeVisible();
}

export { expect };

/**
 * Removes one expected console error (Chromium logs every non-2xx response as one, e.g. a server
 * function refusing a wrong password with 401) and fails if it is not there.
 */
export function expectConsoleError(errors: string[], pattern: RegExp) {
  const at = errors.findIndex((e) => pattern.test(e));
  expect(at, `expected a console error matching ${pattern}`).toBeGreaterThanOrEqual(0);
  errors.splice(at, 1);
}
