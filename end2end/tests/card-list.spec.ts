import { test, expect, waitForHydration } from './fixtures';
import {
  AMEX,
  FRAME,
  MASTERCARD,
  SUCCESS,
  addCardsElsewhere,
  dropConsoleErrors,
  expectAccessible,
  openForm,
  signUp,
  typeCard,
} from './helpers';

// Bug 2: rows are keyed by card, so an open confirmation stays with its card.
test('an open Remove confirmation stays with its card while rows come and go; Cancel and Escape close it', async ({
  page,
  context,
}) => {
  await signUp(page, 'rows');
  const [visa, mastercard, amex] = await addCardsElsewhere(page.request, [SUCCESS, MASTERCARD, AMEX]);
  await page.reload();
  await waitForHydration(page);
  const row = (id: string) => page.locator(`[data-card-id="${id}"]`);
  const confirmOpen = (id: string) => row(id).locator('details.confirm[open]');
  await expect(page.getByTestId('card')).toHaveCount(3);
  await expect(row(visa)).toContainText('Default');

  // Ask to remove the middle card (Mastercard) and confirm: no other row asks anything.
  await row(mastercard).getByText('Remove', { exact: true }).click();
  await expect(row(mastercard).getByRole('button', { name: 'Yes, remove' })).toBeVisible();
  await row(mastercard).getByRole('button', { name: 'Yes, remove' }).click();
  await expect(row(mastercard)).toHaveCount(0);
  await expect(page.locator('details.confirm[open]')).toHaveCount(0);
  await expect(page.getByRole('button', { name: 'Yes, remove' })).toBeHidden();

  // Open a confirmation on the default card, then start Add card in another tab.
  await row(visa).getByText('Remove', { exact: true }).click();
  await expect(confirmOpen(visa)).toHaveCount(1);
  const other = await context.newPage();
  await other.goto('/account/cards');
  await waitForHydration(other);
  const added = await openForm(other);
  await expect(row(added.id)).toBeVisible();
  await expect(confirmOpen(added.id)).toHaveCount(0);
  await expect(row(added.id).getByRole('button', { name: 'Yes, remove' })).toBeHidden();
  await expect(confirmOpen(visa)).toHaveCount(1);
  await other.close();

  // Cancel closes it; Escape closes it and gives focus back to Remove.
  await row(visa).getByRole('link', { name: 'Cancel' }).click();
  await expect(confirmOpen(visa)).toHaveCount(0);
  await row(amex).getByText('Remove', { exact: true }).click();
  await expect(confirmOpen(amex)).toHaveCount(1);
  await row(amex).getByRole('button', { name: 'Yes, remove' }).focus();
  await page.keyboard.press('Escape');
  await expect(confirmOpen(amex)).toHaveCount(0);
  await expect(row(amex).locator('details.confirm:not(.nickname-form) summary')).toBeFocused();
  await expect(page.getByTestId('card')).toHaveCount(3);
});

// Bug 6: a short outage keeps the list and the open form and recovers by itself.
test('a short outage keeps the list and the open form, says Reconnecting…, and recovers', async ({
  page,
  context,
  consoleErrors,
}) => {
  await signUp(page, 'outage');
  const [visa] = await addCardsElsewhere(page.request, [SUCCESS]);
  await page.reload();
  await waitForHydration(page);
  const { frame, row } = await openForm(page);
  await frame.getByLabel('Card number').pressSequentially(MASTERCARD, { delay: 40 });

  // The server stops answering: the stream drops and every fetch fails.
  await page.route('**/account/cards/events**', (route) => route.abort());
  await page.route('**/api/list_cards', (route) => route.abort());
  await context.setOffline(true);
  await expect(page.getByTestId('reconnecting')).toContainText('Reconnecting…');
  await expect(page.locator(`[data-card-id="${visa}"]`)).toContainText('Visa');
  await expect(page.locator(FRAME)).toBeVisible();
  await expect(frame.getByLabel('Card number')).toHaveValue(MASTERCARD);
  await expect(page.getByText('reload the page')).toHaveCount(0);

  await context.setOffline(false);
  await page.unroute('**/account/cards/events**');
  await page.unroute('**/api/list_cards');
  await expect(page.getByTestId('reconnecting')).toHaveText('', { timeout: 15_000 });
  await expect(frame.getByLabel('Card number')).toHaveValue(MASTERCARD);
  await frame.getByLabel(/Expiry date/).pressSequentially('12/34', { delay: 40 });
  await frame.getByLabel('Security code (CVC)').pressSequentially('123', { delay: 40 });
  await frame.getByLabel('Name on card').pressSequentially('Test Customer', { delay: 40 });
  await frame.getByLabel('Postal code').pressSequentially('H2X 1Y4', { delay: 40 });
  await frame.getByRole('button', { name: 'Save card' }).click();
  await expect(row.getByTestId('state')).toHaveText('Active', { timeout: 15_000 });
  dropConsoleErrors(consoleErrors, /ERR_FAILED|ERR_INTERNET_DISCONNECTED/);
});

test('cards show a brand mark, •••• and last four, "Expires soon" by date, and the new default is announced', async ({
  page,
}) => {
  await signUp(page, 'marks');
  const [visa] = await addCardsElsewhere(page.request, [SUCCESS]);
  const now = new Date();
  const next = new Date(now.getFullYear(), now.getMonth() + 1, 1);
  const soon = `${String(next.getMonth() + 1).padStart(2, '0')}/${String(next.getFullYear() % 100).padStart(2, '0')}`;
  const { frame, row } = await openForm(page);
  await typeCard(frame, MASTERCARD, { expiry: soon });
  await expect(row.getByTestId('state')).toHaveText('Active');
  await expect(row.getByTestId('expiry')).toHaveText('Expires soon');
  await expect(row).toContainText('Mastercard •••• 4444');
  await expect(row.locator('svg.brand-mark')).toHaveAttribute('aria-hidden', 'true');

  const visaRow = page.locator(`[data-card-id="${visa}"]`);
  await expect(visaRow).toContainText('Default');
  await expect(visaRow.getByTestId('expiry')).toHaveCount(0);
  await visaRow.getByText('Remove', { exact: true }).click();
  await visaRow.getByRole('button', { name: 'Yes, remove' }).click();
  await expect(visaRow).toHaveCount(0);
  await expect(row).toContainText('Default');
  await expect(page.getByTestId('announcer')).toContainText('Mastercard ending 4444 is now your default card.');
});

test('a card can be given a nickname, shown beside brand and last four in every tab', async ({ page, context }) => {
  await signUp(page, 'nickname');
  const [visa] = await addCardsElsewhere(page.request, [SUCCESS]);
  const other = await context.newPage();
  await other.goto('/account/cards');
  await waitForHydration(other);
  await page.bringToFront();
  const row = page.locator(`[data-card-id="${visa}"]`);
  await row.getByText('Nickname', { exact: true }).click();
  const field = row.getByLabel('Nickname (optional)');
  await field.pressSequentially('Work card', { delay: 30 });
  await row.getByRole('button', { name: 'Save nickname' }).click();
  await expect(row).toContainText('Work card · Visa •••• 4242');
  await expect(row.locator('summary', { hasText: 'Nickname' })).toHaveAttribute('aria-label', 'Nickname for Work card, Visa ending 4242');
  await expect(other.locator(`[data-card-id="${visa}"]`)).toContainText('Work card');
  await expectAccessible(page, 'card with a nickname');
});
