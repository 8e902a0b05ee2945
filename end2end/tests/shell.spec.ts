import { test, expect, expectConsoleError, waitForHydration } from './fixtures';

test('the saved cards page renders on the server and hydrates', async ({ page }) => {
  await page.goto('/account/cards');
  await expect(page).toHaveTitle('Saved cards · Platform');
  await expect(page.getByRole('heading', { level: 1, name: 'Saved cards' })).toBeVisible();
  await waitForHydration(page);
});

test('the menu button works only through WASM', async ({ page }) => {
  await page.setViewportSize({ width: 390, height: 800 });
  await page.goto('/');
  await waitForHydration(page);
  const toggle = page.getByRole('button', { name: 'Menu' });
  const nav = page.getByRole('navigation', { name: 'Main' });
  await expect(toggle).toHaveAttribute('aria-expanded', 'false');
  await expect(nav).toBeHidden();
  await toggle.click();
  await expect(toggle).toHaveAttribute('aria-expanded', 'true');
  await expect(nav).toBeVisible();
  await nav.getByRole('link', { name: /Saved cards/ }).click();
  await expect(page).toHaveURL(/\/account\/cards$/);
});

test('a server function round trip answers from the server', async ({ page }) => {
  await page.goto('/');
  await waitForHydration(page);
  // A client-side navigation loads the cards page's list through its server function.
  const answered = page.waitForResponse(
    (r) => r.url().endsWith('/api/list_cards') && r.request().method() === 'POST',
  );
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Account → Saved cards' }).click();
  const response = await answered;
  expect(response.status()).toBe(200);
  const body = await response.json();
  expect(body.signed_in).toBe(false);
  await expect(page.getByRole('link', { name: 'Sign in' }).last()).toBeVisible();
});

test('an unknown address shows the 404 page with status 404', async ({ page, consoleErrors }) => {
  const response = await page.goto('/no/such/page');
  expect(response?.status()).toBe(404);
  await expect(page.getByRole('heading', { name: 'Page not found' })).toBeVisible();
  await waitForHydration(page);
  // Chromium reports the document's own 404 status as a console error: that one is expected.
  expectConsoleError(consoleErrors, /status of 404/);
});
