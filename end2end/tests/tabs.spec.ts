import { Page } from '@playwright/test';
import { test, expect, waitForHydration } from './fixtures';
import { SUCCESS, addCardsElsewhere, openForm, signUp, typeCard } from './helpers';

// Bug 3: a browser allows six HTTP/1.1 connections per host; a stream per tab would leave the
// seventh tab loading forever. The tabs share one stream.
test('eight open tabs all load and all see a new card turn Active', async ({ page, context }) => {
  test.setTimeout(90_000);
  await signUp(page, 'eighttabs');
  const streams = new Set<string>();
  context.on('request', (r) => {
    if (r.url().includes('/account/cards/events')) streams.add(r.url());
  });
  const tabs: Page[] = [page];
  for (let i = 1; i < 8; i++) {
    const tab = await context.newPage();
    await tab.goto('/account/cards', { timeout: 10_000 });
    await expect(tab.getByRole('heading', { level: 1, name: 'Saved cards' })).toBeVisible();
    await waitForHydration(tab);
    tabs.push(tab);
  }
  const last = tabs[7];
  const { id, frame } = await openForm(last);
  await typeCard(frame, SUCCESS);
  for (const tab of tabs) {
    await expect(tab.locator(`[data-card-id="${id}"]`).getByTestId('state')).toHaveText('Active');
  }
  // Still room for more: one more page loads at once.
  const ninth = await context.newPage();
  await ninth.goto('/', { timeout: 10_000 });
  await expect(ninth.getByRole('heading', { level: 1 })).toBeVisible();
});

test('when the leading tab closes, another tab takes over the live updates', async ({ page, context }) => {
  await signUp(page, 'leader');
  const second = await context.newPage();
  await second.goto('/account/cards');
  await waitForHydration(second);
  await page.close();
  const [id] = await addCardsElsewhere(second.request, [SUCCESS]);
  await expect(second.locator(`[data-card-id="${id}"]`).getByTestId('state')).toHaveText('Active');
});

// Bug 9: a tab left open after signing out elsewhere stops showing the cards.
test('signing out in one tab clears the cards from the other open tabs', async ({ page, context }) => {
  await signUp(page, 'signout', 'Sign Out Tester');
  const [id] = await addCardsElsewhere(page.request, [SUCCESS]);
  const other = await context.newPage();
  await other.goto('/account/cards');
  await waitForHydration(other);
  await expect(other.locator(`[data-card-id="${id}"]`)).toBeVisible();
  await expect(other.getByRole('banner')).toContainText('Sign Out Tester');

  await page.bringToFront();
  await page.getByRole('button', { name: 'Sign out' }).click();
  await expect(page).toHaveURL(/\/sign-in$/);
  await expect(other.getByTestId('card')).toHaveCount(0);
  await expect(other.getByText('to see and add your saved cards')).toBeVisible();
  await expect(other.getByRole('banner')).not.toContainText('Sign Out Tester');
});

test('without Web Locks, a hidden tab closes its stream and reopens it when shown again', async ({ page }) => {
  // A browser without the Web Locks API cannot elect a leader tab; the page can still tell
  // whether it is hidden (simulated here: a test browser's pages are always visible).
  await page.addInitScript(() => {
    Object.defineProperty(Navigator.prototype, 'locks', { get: () => undefined });
    Object.defineProperty(Document.prototype, 'hidden', { get: () => !!(window as any).__hidden });
  });
  await signUp(page, 'hidden');
  const opened: string[] = [];
  const closed: string[] = [];
  page.on('request', (r) => {
    if (r.url().includes('/account/cards/events')) opened.push(r.url());
  });
  page.on('requestfailed', (r) => {
    if (r.url().includes('/account/cards/events')) closed.push(r.url());
  });
  await page.reload();
  await waitForHydration(page);
  await expect.poll(() => opened.length).toBe(1);
  // The reload ended the stream of the page before it.
  const closedBefore = closed.length;
  const setHidden = (hidden: boolean) =>
    page.evaluate((h) => {
      (window as any).__hidden = h;
      document.dispatchEvent(new Event('visibilitychange'));
    }, hidden);
  await setHidden(true);
  await expect.poll(() => closed.length).toBe(closedBefore + 1);
  await page.waitForTimeout(2500);
  expect(opened.length).toBe(1);
  await setHidden(false);
  await expect.poll(() => opened.length).toBe(2);
  // And it still follows changes.
  const [id] = await addCardsElsewhere(page.request, [SUCCESS]);
  await expect(page.locator(`[data-card-id="${id}"]`).getByTestId('state')).toHaveText('Active');
});
