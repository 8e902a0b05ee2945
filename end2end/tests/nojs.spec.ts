import { Browser } from '@playwright/test';
import { test, expect } from './fixtures';
import { FRAME, SUCCESS, addCardsElsewhere, uniqueEmail } from './helpers';

async function noScript(browser: Browser) {
  const context = await browser.newContext({ javaScriptEnabled: false });
  return { context, page: await context.newPage() };
}

async function signUpWithoutScript(page: import('@playwright/test').Page, email = uniqueEmail('nojs')) {
  await page.goto('/sign-up');
  await page.getByLabel('Name').fill('No Script');
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password', { exact: true }).fill('a long password');
  await page.getByRole('button', { name: 'Create account' }).click();
  await expect(page).toHaveURL(/\/account\/cards$/);
  return email;
}

// Bug 4: without JavaScript a refused action lands back on its page with the message in place.
test('without JavaScript, a wrong password or a taken email comes back to the form with the message', async ({
  browser,
}) => {
  const { context, page } = await noScript(browser);
  await page.goto('/sign-in?next=/account/cards');
  await page.getByLabel('Email').fill(uniqueEmail('nobody'));
  await page.getByLabel('Password').fill('not the password');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page).toHaveURL(/\/sign-in\?next=%2Faccount%2Fcards&notice=|\/sign-in\?next=\/account\/cards&notice=/);
  await expect(page.getByRole('alert').filter({ hasText: "That email and password don't match" })).toBeVisible();
  await expect(page.getByRole('heading', { level: 1, name: 'Sign in' })).toBeVisible();
  await expect(page.getByText('ServerError')).toHaveCount(0);

  await page.goto('/sign-up');
  await page.getByLabel('Name').fill('Taken');
  await page.getByLabel('Email').fill('demo@example.com');
  await page.getByLabel('Password', { exact: true }).fill('a long password');
  await page.getByRole('button', { name: 'Create account' }).click();
  await expect(page).toHaveURL(/\/sign-up\?notice=/);
  await expect(page.getByRole('alert').filter({ hasText: 'already exists' })).toBeVisible();

  // The address carries an id, never text: a made-up one shows nothing.
  await page.goto('/sign-in?notice=Call%20555-0100%20to%20verify');
  await expect(page.getByText('555-0100')).toHaveCount(0);
  await context.close();
});

test('without JavaScript, the pending cap and removing a removed card come back to the cards page', async ({
  browser,
}) => {
  const { context, page } = await noScript(browser);
  await signUpWithoutScript(page);
  const [card] = await addCardsElsewhere(page.request, [SUCCESS]);

  // Remove, after another tab removed the same card already.
  await page.goto('/account/cards');
  const row = page.locator(`[data-card-id="${card}"]`);
  await row.getByText('Remove', { exact: true }).click();
  expect((await page.request.post('/api/remove_card', { form: { card_id: card } })).status()).toBe(200);
  await row.getByRole('button', { name: 'Yes, remove' }).click();
  await expect(page).toHaveURL(/\/account\/cards\?notice=/);
  await expect(page.getByRole('alert').filter({ hasText: "That card isn't in your saved cards" })).toBeVisible();

  // Three forms open at once is the cap; the fourth is refused on the page.
  for (let i = 0; i < 3; i++) {
    await page.goto('/account/cards');
    await page.getByRole('button', { name: 'Add card' }).click();
    await expect(page).toHaveURL(/\?adding=/);
  }
  await page.goto('/account/cards');
  await page.getByRole('button', { name: 'Add card' }).click();
  await expect(page).toHaveURL(/\/account\/cards\?notice=/);
  await expect(page.getByRole('alert').filter({ hasText: 'You already have 3 cards' })).toBeVisible();
  await context.close();
});

test('without JavaScript, a card being verified offers Refresh', async ({ browser }) => {
  const { context, page } = await noScript(browser);
  await signUpWithoutScript(page);
  await page.getByRole('button', { name: 'Add card' }).click();
  await expect(page).toHaveURL(/\?adding=/);
  const id = new URL(page.url()).searchParams.get('adding')!;
  const row = page.locator(`[data-card-id="${id}"]`);
  await expect(row.getByTestId('state')).toHaveText('Waiting for card details');
  await expect(row.getByRole('link', { name: 'Refresh' })).toBeVisible();
  await expect(page.locator(FRAME)).toBeVisible();
  await context.close();
});
