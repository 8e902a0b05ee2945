import { Page } from '@playwright/test';
import { test, expect, expectConsoleError, waitForHydration } from './fixtures';
import {
  DECLINE,
  SLOW,
  SUCCESS,
  dropConsoleErrors,
  expectReceived,
  expectAccessible,
  openForm,
  signUp,
  typeCard,
  uniqueEmail,
} from './helpers';

async function tabTo(page: Page, name: string) {
  for (let i = 0; i < 20; i++) {
    await page.keyboard.press('Tab');
    const focused = await page.evaluate(() => document.activeElement?.textContent?.trim());
    if (focused === name) return;
  }
  throw new Error(`Tab never reached ${name}`);
}

test('keyboard only: add a card without touching the mouse', async ({ page }) => {
  await signUp(page, 'keyboard');
  await page.locator('body').focus();
  await tabTo(page, 'Add card');
  await page.keyboard.press('Enter');
  await expect(page.locator('iframe[title="Jetpay secure card form"]')).toBeFocused();
  const frame = page.frameLocator('iframe[title="Jetpay secure card form"]');
  // A person tabs into the form once they see it: on a cold server its page can arrive after
  // the frame took focus.
  await expect(frame.getByLabel('Card number')).toBeVisible();
  await page.keyboard.press('Tab');
  await expect(frame.getByLabel('Card number')).toBeFocused();
  await page.keyboard.type(SUCCESS, { delay: 30 });
  await page.keyboard.press('Tab');
  await page.keyboard.type('12/34', { delay: 30 });
  await page.keyboard.press('Tab');
  await page.keyboard.type('123', { delay: 30 });
  await page.keyboard.press('Tab');
  await page.keyboard.type('Key Board', { delay: 30 });
  await page.keyboard.press('Tab');
  await page.keyboard.type('H2X 1Y4', { delay: 30 });
  await page.keyboard.press('Enter');
  await expectReceived(frame);
  const row = page.getByTestId('card').first();
  await expect(row.getByTestId('state')).toHaveText('Active');
  await expect(row).toBeFocused();
  // Remove is reachable and cancellable by keyboard too.
  await tabTo(page, 'Remove');
  await page.keyboard.press('Enter');
  await expect(row.getByRole('button', { name: 'Yes, remove' })).toBeVisible();
  await page.keyboard.press('Escape');
  await expect(row.getByRole('button', { name: 'Yes, remove' })).toBeHidden();
});

for (const colorScheme of ['light', 'dark'] as const) {
  test(`no WCAG 2.1 AA violations in any state (${colorScheme})`, async ({ page, consoleErrors }) => {
    test.setTimeout(90_000);
    await page.emulateMedia({ colorScheme });
    await page.goto('/');
    await waitForHydration(page);
    await expectAccessible(page, 'home');
    await page.goto('/account/cards');
    await waitForHydration(page);
    await expectAccessible(page, 'cards, signed out');
    await page.goto('/sign-in');
    await waitForHydration(page);
    await page.getByLabel('Email').fill(uniqueEmail('nobody'));
    await page.getByLabel('Password').fill('wrong password');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect(page.getByRole('alert').filter({ hasText: "don't match" })).toBeVisible();
    await expectAccessible(page, 'sign in with an error');
    expectConsoleError(consoleErrors, /status of 401/);
    const missing = await page.goto('/no/such/page');
    expect(missing?.status()).toBe(404);
    await waitForHydration(page);
    await expectAccessible(page, 'not found');
    expectConsoleError(consoleErrors, /status of 404/);

    await signUp(page, `axe${colorScheme}`);
    await expectAccessible(page, 'cards, empty');
    const pending = await openForm(page);
    await expectAccessible(page, 'form open, waiting for card details');
    await pending.frame.getByRole('button', { name: 'Save card' }).click();
    await expect(pending.frame.getByText('Enter the card number.')).toBeVisible();
    await expectAccessible(page, 'form showing every error');
    await typeCard(pending.frame, SLOW);
    await expect(pending.row.getByTestId('state')).toHaveText('Verifying…');
    await expectAccessible(page, 'verifying');
    await expect(pending.row.getByTestId('state')).toHaveText('Active', { timeout: 15_000 });
    await expectAccessible(page, 'active');
    const failed = await openForm(page);
    await typeCard(failed.frame, DECLINE);
    await expect(failed.row.getByTestId('state')).toHaveText('Failed');
    await expectAccessible(page, 'failed');
    await pending.row.getByText('Remove', { exact: true }).click();
    await expectAccessible(page, 'remove confirmation open');
    await page.keyboard.press('Escape');
    await page.route('**/api/list_cards', (route) => route.abort());
    await page.evaluate(() => window.dispatchEvent(new Event('offline')));
    await expect(page.getByTestId('reconnecting')).toContainText('Reconnecting…');
    await expectAccessible(page, 'reconnecting');
    await page.unroute('**/api/list_cards');
    await page.setViewportSize({ width: 390, height: 844 });
    await expectAccessible(page, 'phone');
    dropConsoleErrors(consoleErrors, /ERR_FAILED/);
  });
}
